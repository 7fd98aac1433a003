"""Phase 3, RLAF (V1 §4.2, docs/design.md §5): the generator by policy gradient on auction feedback.

Trains the generator (slot tokens, its cross blocks and the bid weight w_z of Eq. 17) with the
loss of Eq. 23 and the marginal rewards of Eq. 22 (:mod:`egakit.training.rlaf`); RecFormer, the
heads and the evaluator are frozen (eval mode) and give q̂, H_ad and the reward's q. Data: full
candidate sets (``WorldDataModule(train_mode="full")``). Each step samples ``num_samples``
lists with seeds ``seed + step · num_samples + s`` (reproducible, fresh every step).

Validation / test score the greedy allocation (inference mode of the generator):

- ``reward``: mean Eq. 22 reward of the greedy list's ads;
- ``erpm_bid``: eRPM (‰) with each winner paying its bid, q from the evaluator — the list's
  bid-weighted value V(Y) that RLAF maximises (revenue needs the payment phase); and
  ``erpm_bid_gsp``, the same for the GSP-by-q̂·b ranking of the pre-trained model, the baseline
  RLAF should beat;
- with the oracle: ``true_ectr`` / ``true_erpm_bid`` (and ``_gsp``): the same on the truth.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from egakit.auction.mechanism import index_batch
from egakit.batch import RequestBatch
from egakit.checkpoint import ENCODER, EVALUATOR, GENERATOR
from egakit.metrics import ExpectedCTR, ExpectedRPM
from egakit.model.config import EGAV1Config
from egakit.model.payment import gsp_allocation
from egakit.training.lr_schedule import LRSchedule
from egakit.training.rlaf import BASELINES, marginal_rewards, rlaf_step, sample_seeds
from egakit.lit.base import EGAV1Module

STAGES = ("val", "test")
ALLOCATIONS = ("", "_gsp")  # the generator's greedy list, and GSP by q̂·b


class RLAFModule(EGAV1Module):
    """Generator by policy gradient (see the module docstring).

    Args (besides :class:`~egakit.lit.base.EGAV1Module`'s):
        num_samples: lists sampled per request and step (S).
        baseline: ``"greedy"`` (self-critical), ``"samples"`` (leave-one-out mean, S ≥ 2) or
            ``"none"``; see :mod:`egakit.training.rlaf`.
        seed: base seed of the Gumbel sampling.
        oracle_metrics: also score the allocations on the world's truth in val / test.
    """

    phase = "rlaf"
    trainable = GENERATOR
    required = ENCODER + EVALUATOR

    def __init__(
        self,
        model: EGAV1Config,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        lr: float = 1e-3,
        init_from: Optional[str] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        num_samples: int = 1,
        baseline: Literal["greedy", "samples", "none"] = "greedy",
        seed: int = 0,
        oracle_metrics: bool = True,
        lr_schedule: Optional[LRSchedule] = None,
    ) -> None:
        super().__init__(model, vocab_sizes, num_slots, lr, init_from, cross_vocab_sizes, lr_schedule)
        if self.config.allocation != "aucformer":
            raise ValueError(f"RLAF trains the AucFormer generator; model.allocation={self.config.allocation!r}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        if num_samples < 1 or (baseline == "samples" and num_samples < 2):
            raise ValueError(f"num_samples={num_samples}: need >= 1, and >= 2 with baseline='samples'")
        self.num_samples = num_samples
        self.baseline = baseline
        self.seed = seed
        self.oracle_metrics = oracle_metrics
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        **{f"erpm_bid{a}": ExpectedRPM() for a in ALLOCATIONS},
                        **{f"true_ectr{a}": ExpectedCTR() for a in ALLOCATIONS},
                        **{f"true_erpm_bid{a}": ExpectedRPM() for a in ALLOCATIONS},
                    }
                )
                for stage in STAGES
            }
        )

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():  # frozen encoder
            enc = self.model.encode(batch)
        seeds = sample_seeds(self.seed, self.global_step, self.num_samples)
        step = rlaf_step(self.model, batch, enc, seeds, self.baseline)
        self.log_scalars(
            "train",
            {
                "loss": step.loss,
                "reward": step.reward.mean(),
                "advantage_abs": step.advantage.abs().mean(),
                "value": step.value.mean(),
                "w_z": self.model.generator.w_z.detach(),
            },
            batch_size=batch.batch_size,
            on_step=True,
        )
        return step.loss

    def _evaluate(self, batch: RequestBatch, stage: str) -> None:
        real = self.real_requests(batch)
        if not bool(real.any()):
            return
        batch = index_batch(batch, real.nonzero().squeeze(1))
        enc = self.model.encode(batch)
        t = self.model.slot_tokens(enc)
        idx, _ = self.model.generate(batch, encoding=enc, slot_tokens=t)
        rewards = marginal_rewards(self.model, batch, enc, t, idx)
        gsp_idx, _, _ = gsp_allocation(enc.q_hat, batch.bids, enc.cand_mask, self.config.K)
        lists = {"": (idx, rewards.q), "_gsp": (gsp_idx, self.model.evaluate(batch, gsp_idx, encoding=enc))}
        metrics = self.metrics[stage]
        self.log_scalars(stage, {"reward": rewards.reward.mean()}, batch_size=batch.batch_size)
        oracle = self.oracle() if self.oracle_metrics else None
        for name, (chosen, q) in lists.items():
            bids = batch.bids.gather(1, chosen)
            metrics[f"erpm_bid{name}"].update(q, bids)
            self.log(f"{stage}/erpm_bid{name}", metrics[f"erpm_bid{name}"], on_epoch=True, prog_bar=name == "")
            if oracle is not None:
                truth = oracle.outcome(batch, batch.cand_ids.gather(1, chosen), bids)
                metrics[f"true_ectr{name}"].update(truth.ctr)
                metrics[f"true_erpm_bid{name}"].update(truth.ctr, bids)
                self.log(f"{stage}/true_ectr{name}", metrics[f"true_ectr{name}"], on_epoch=True)
                self.log(f"{stage}/true_erpm_bid{name}", metrics[f"true_erpm_bid{name}"], on_epoch=True)

    def validation_step(self, batch: RequestBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: RequestBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")
