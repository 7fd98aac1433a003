"""Build the evaluated systems and the paper's evaluator from their checkpoints.

EGA-V1 checkpoints are the training phases' (:mod:`egakit.checkpoint`): the model is rebuilt from
the stored config and vocabularies and only modules that some phase has *trained* are accepted
(a pre-training checkpoint holds random evaluator weights, which must never score anything).
Cascade stages come from :func:`egakit.baselines.checkpoint.load_stage_model`.
"""
from __future__ import annotations

from typing import Optional

from egakit.baselines.cascade import CascadeMechanism, MCAPipeline
from egakit.baselines.checkpoint import load_stage_model
from egakit.checkpoint import ENCODER, EVALUATOR, load_ega_v1
from egakit.evaluation.config import CASCADE_KINDS, EGA_KIND, ORACLE_KINDS, SystemSpec, resolve
from egakit.evaluation.systems import CascadeSystem, EGASystem, OracleCTRSystem, System
from egakit.model.ega_v1 import EGAV1
from egakit.sim.oracle import Oracle


def load_ega_system(path: str, allocation: Optional[str] = None, payment_rule: Optional[str] = None) -> EGASystem:
    """EGA-V1 as an evaluated system; ``allocation`` / ``payment_rule`` override the stored ones
    (``"gsp"``: the −auf ablation on the same encoder; ``"network"``: Eq. 19's prices)."""
    return EGASystem(load_ega_v1(path, allocation=allocation, payment_rule=payment_rule)[0])


def load_evaluator(path: str) -> EGAV1:
    """The permutation-aware evaluator (Eq. 18) with its encoder: a reward-phase (or later) checkpoint."""
    return load_ega_v1(path, ENCODER + EVALUATOR)[0]


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
