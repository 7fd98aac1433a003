"""Phase 4, the payment network (V1 §4.2, App. A.2; docs/design.md §5): revenue under an IC constraint.

Trains only the payment network (Eq. 19) with the Lagrangian of Eq. 24 over the ex-post regret of
Eq. 34 (:mod:`egakit.training.payment`): for each winner of the frozen generator's greedy
allocation, misreports γ·b (γ ∈ ``gammas``) plus ``ascent_steps`` gradient-ascent steps, the
allocation re-run for each with the frozen generator, utilities (v − p)·q with v the truthful bid
and q the frozen evaluator's pCTR. λ (one per slot) is updated every ``lagrange_every`` steps,
ρ grows by ``rho_increment`` every ``rho_every`` steps up to ``rho_max``.

Logs (train): ``loss``, ``revenue`` (Σ p·q per request), ``regret`` (mean per winner),
``lambda_mean``, ``rho``. Validation / test (with ``val_ascent_steps`` ascent steps: a stronger
search than in training, as RegretNet reports the evaluation regret): ``erpm`` (‰, evaluator q ×
learned prices), ``regret``, ``psi`` = Σ regret / Σ truthful utility over the winners,
``ir_violations`` (prices above bids; 0 by construction), ``lambda_mean``, ``rho`` and, with the
oracle, ``true_ectr`` / ``true_erpm`` of the learned mechanism on the truth.

Validation runs the misreport ascent with autograd: it recomputes the encoding from a copy of the
batch outside ``torch.inference_mode`` (Lightning evaluates under it by default).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from egakit.auction.mechanism import index_batch
from egakit.auction.regret import DEFAULT_GAMMAS
from egakit.batch import RequestBatch
from egakit.checkpoint import ENCODER, EVALUATOR, GENERATOR, PAYMENT
from egakit.metrics import ExpectedCTR, ExpectedRPM, PsiMetric
from egakit.model.config import EGAV1Config
from egakit.training.lr_schedule import LRSchedule
from egakit.training.payment import LagrangeMultipliers, clone_batch, ex_post_regret, payment_lagrangian, rho_at
from egakit.lit.base import EGAV1Module

STAGES = ("val", "test")


class PaymentModule(EGAV1Module):
    """Payment network by the Lagrangian of Eq. 24 (see the module docstring).

    Args (besides :class:`~egakit.lit.base.EGAV1Module`'s):
        gammas: misreport grid b' = γ·b (docs/design.md §5: 0.2, 0.4, …, 2.0).
        ascent_steps / ascent_lr: gradient-ascent steps on log b' after the grid, and their step.
        val_ascent_steps: ascent steps in validation / test.
        lambda_init: initial λ of every slot (RegretNet: ~5).
        lagrange_every: steps between λ updates.
        rho_init / rho_increment / rho_every / rho_max: ρ schedule (:func:`egakit.training.payment.rho_at`).
        max_rows: cap on the (request, winner) rows of one stacked misreport allocation call
            (memory: rows × N × d); None = all B·K rows at once.
        oracle_metrics: also score the learned mechanism on the world's truth in val / test.
    """

    phase = "payment"
    trainable = PAYMENT
    required = ENCODER + EVALUATOR + GENERATOR

    def __init__(
        self,
        model: EGAV1Config,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        lr: float = 1e-3,
        init_from: Optional[str] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        gammas: tuple[float, ...] = DEFAULT_GAMMAS,
        ascent_steps: int = 3,
        ascent_lr: float = 0.05,
        val_ascent_steps: int = 20,
        lambda_init: float = 5.0,
        lagrange_every: int = 100,
        rho_init: float = 1.0,
        rho_increment: float = 1.0,
        rho_every: int = 1000,
        rho_max: float = 100.0,
        max_rows: Optional[int] = None,
        oracle_metrics: bool = True,
        lr_schedule: Optional[LRSchedule] = None,
    ) -> None:
        super().__init__(model, vocab_sizes, num_slots, lr, init_from, cross_vocab_sizes, lr_schedule)
        if self.config.allocation != "aucformer":
            raise ValueError(f"the payment network prices the AucFormer allocation; model.allocation={self.config.allocation!r}")
        if 1.0 not in [float(g) for g in gammas]:
            raise ValueError(f"gammas must contain 1.0 (the truthful report), got {gammas}")
        for name, value in (("lagrange_every", lagrange_every), ("rho_every", rho_every)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if ascent_steps < 0 or val_ascent_steps < 0 or ascent_lr <= 0:
            raise ValueError("ascent_steps and val_ascent_steps must be >= 0, ascent_lr > 0")
        self.gammas = [float(g) for g in gammas]
        self.ascent_steps = ascent_steps
        self.ascent_lr = ascent_lr
        self.val_ascent_steps = val_ascent_steps
        self.lagrange_every = lagrange_every
        self.rho_schedule = dict(rho_init=rho_init, rho_increment=rho_increment, rho_every=rho_every, rho_max=rho_max)
        self.max_rows = max_rows
        self.oracle_metrics = oracle_metrics
        self.lagrange = LagrangeMultipliers(self.config.K, lambda_init)
        #: ρ of the last training step (a buffer: checkpoints carry it to evaluation and resume).
        self.register_buffer("rho_last", torch.tensor(float(rho_init)))
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {"erpm": ExpectedRPM(), "psi": PsiMetric(), "true_ectr": ExpectedCTR(), "true_erpm": ExpectedRPM()}
                )
                for stage in STAGES
            }
        )

    @property
    def rho(self) -> float:
        """ρ of the current training step (the schedule at ``global_step``)."""
        return rho_at(self.global_step, **self.rho_schedule)

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():  # frozen encoder and generator
            enc = self.model.encode(batch)
            t = self.model.slot_tokens(enc)
        out = ex_post_regret(
            self.model, batch, enc, t,
            gammas=self.gammas, ascent_steps=self.ascent_steps, ascent_lr=self.ascent_lr, max_rows=self.max_rows,
        )
        rho = self.rho
        self.rho_last.fill_(rho)
        o = out.outcome
        loss = payment_lagrangian(o.prices * o.q, out.regret, self.lagrange.lam, rho)
        mean_regret = out.regret.detach().mean(0)
        if self._trainer is not None:
            mean_regret = self.trainer.strategy.reduce(mean_regret, reduce_op="mean")
        self.lagrange.accumulate(mean_regret)
        if (self.global_step + 1) % self.lagrange_every == 0:
            self.lagrange.update(rho)
        self.log_scalars(
            "train",
            {
                "loss": loss,
                "revenue": o.revenue.mean(),
                "regret": out.regret.mean(),
                "lambda_mean": self.lagrange.lam.mean(),
                "rho": rho,
            },
            batch_size=batch.batch_size,
            on_step=True,
        )
        return loss

    def _evaluate(self, batch: RequestBatch, stage: str) -> None:
        real = self.real_requests(batch)
        if not bool(real.any()):
            return
        with torch.inference_mode(False):
            batch = clone_batch(index_batch(batch, real.nonzero().squeeze(1)))
            with torch.no_grad():
                enc = self.model.encode(batch)
                t = self.model.slot_tokens(enc)
            out = ex_post_regret(
                self.model, batch, enc, t,
                gammas=self.gammas, ascent_steps=self.val_ascent_steps, ascent_lr=self.ascent_lr,
                max_rows=self.max_rows,
            )
            o, regret = out.outcome, out.regret.detach()
            prices, q, bids = o.prices.detach(), o.q, o.bids
            utility = o.utility.detach()
        metrics = self.metrics[stage]
        metrics["erpm"].update(q, prices)
        metrics["psi"].update(regret, utility)
        self.log_scalars(
            stage,
            {
                "regret": regret.mean(),
                "revenue": (prices * q).sum(-1).mean(),
                "ir_violations": (prices > bids).sum().float(),
                "lambda_mean": self.lagrange.lam.mean(),
                "rho": self.rho_last,
            },
            batch_size=batch.batch_size,
        )
        self.log(f"{stage}/erpm", metrics["erpm"], on_epoch=True, prog_bar=True)
        self.log(f"{stage}/psi", metrics["psi"], on_epoch=True)
        oracle = self.oracle() if self.oracle_metrics else None
        if oracle is not None:
            truth = oracle.outcome(batch, batch.cand_ids.gather(1, o.idx), prices)
            metrics["true_ectr"].update(truth.ctr)
            metrics["true_erpm"].update(truth.ctr, prices)
            self.log(f"{stage}/true_ectr", metrics["true_ectr"], on_epoch=True)
            self.log(f"{stage}/true_erpm", metrics["true_erpm"], on_epoch=True)

    def validation_step(self, batch: RequestBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: RequestBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")
