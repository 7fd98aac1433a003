"""Build the evaluated systems and the paper's evaluator from their checkpoints.

EGA-V1 checkpoints are the training phases' (:mod:`egakit.checkpoint`): the model is rebuilt from
the stored config and vocabularies and only modules that some phase has *trained* are accepted
(a pre-training checkpoint holds random evaluator weights, which must never score anything).
Cascade stages come from :func:`egakit.baselines.checkpoint.load_stage_model`.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from torch import nn

from egakit.baselines.cascade import CascadeMechanism, MCAPipeline
from egakit.baselines.checkpoint import load_stage_model
from egakit.checkpoint import (
    ENCODER,
    EVALUATOR,
    GENERATOR,
    PAYMENT,
    checkpoint_metadata,
    config_from_metadata,
    load_init,
    read_checkpoint,
)
from egakit.evaluation.config import CASCADE_KINDS, EGA_KIND, ORACLE_KINDS, SystemSpec, resolve
from egakit.evaluation.systems import CascadeSystem, EGASystem, OracleCTRSystem, System
from egakit.model.ega_v1 import EGAV1
from egakit.sim.oracle import Oracle


class _Holder(nn.Module):
    """``model`` at the state-dict prefix the phase checkpoints use."""

    def __init__(self, model: EGAV1) -> None:
        super().__init__()
        self.model = model


def load_ega_model(
    path: str, required: Sequence[str], allocation: Optional[str] = None, payment_rule: Optional[str] = None
) -> EGAV1:
    """EGA-V1 from a phase checkpoint, with the ``required`` module groups (trained) restored;
    ``allocation`` overrides the stored one (``"gsp"``: the −auf ablation on the same encoder),
    ``payment_rule`` the pricing (``"network"``: Eq. 19's payment network, ``"critical"``)."""
    ckpt = read_checkpoint(path)
    meta = checkpoint_metadata(ckpt, path)
    config = config_from_metadata(meta, path)
    if allocation is not None:
        config = dataclasses.replace(config, allocation=allocation)
    if payment_rule is not None:
        config = dataclasses.replace(config, payment_rule=payment_rule)
    cross = meta.get("cross_vocab_sizes") if config.use_cross_features else None
    model = EGAV1(config, meta["vocab_sizes"], cross)
    load_init(_Holder(model), path, list(required))
    return model.eval()


def ega_required(model_allocation: str, payment_rule: str = "network") -> tuple[str, ...]:
    """Module groups :meth:`EGAV1.allocate` reads: the encoder, plus the generator for AucFormer
    and the payment network when it prices (``payment_rule="network"``; critical-bid prices need
    only the generator). GSP on q̂·b, the −auf ablation, needs the encoder only."""
    if model_allocation == "gsp":
        return ENCODER
    return ENCODER + GENERATOR + (PAYMENT if payment_rule == "network" else ())


def load_ega_system(path: str, allocation: Optional[str] = None, payment_rule: Optional[str] = None) -> EGASystem:
    stored = config_from_metadata(checkpoint_metadata(read_checkpoint(path), path), path)
    allocation = stored.allocation if allocation is None else allocation
    payment_rule = stored.payment_rule if payment_rule is None else payment_rule
    return EGASystem(load_ega_model(path, ega_required(allocation, payment_rule), allocation, payment_rule))


def load_evaluator(path: str) -> EGAV1:
    """The permutation-aware evaluator (Eq. 18) with its encoder: a reward-phase (or later) checkpoint."""
    return load_ega_model(path, ENCODER + EVALUATOR)


def load_cascade(spec: SystemSpec, seed: int, K: int) -> CascadeSystem:
    stages = {role: load_stage_model(resolve(path, seed), role).model for role, path in spec.checkpoints().items()}
    mechanism = CascadeMechanism(spec.recall_size, spec.prerank_size, K, spec.prerank_score)
    return CascadeSystem(MCAPipeline(stages["recall"], stages["prerank"], stages["rank"], mechanism))


def load_system(spec: SystemSpec, seed: int, oracle: Oracle, K: int) -> System:
    """The system of ``spec`` for ``seed`` (``{seed}`` in its checkpoint paths)."""
    if spec.kind in CASCADE_KINDS:
        return load_cascade(spec, seed, K)
    if spec.kind == EGA_KIND:
        return load_ega_system(resolve(spec.checkpoint, seed), spec.allocation, spec.payment_rule)
    if spec.kind in ORACLE_KINDS:
        return OracleCTRSystem(oracle, ORACLE_KINDS[spec.kind], K)
    raise ValueError(f"unknown system kind {spec.kind!r}")
