"""Per-batch scoring of a system on both sources (docs/design.md §6, V1 §5.1.2).

``source="oracle"`` — the truth (the world's hidden click model, :class:`~egakit.sim.oracle.Oracle`):

- eCTR = mean over requests of Σ_k q_k × 100, eRPM = mean of Σ_k q_k · p_k × 1000, with q the
  true CTR of the allocated list in slot order (position bias and externalities included);
- Ψ = Σ regret / Σ truthful utility, utilities (v − p)·q with the true values v and true q, every
  misreport γ·b re-running the whole mechanism;
- Recall@50 and AUC against clicks sampled from the true slot-free CTR of *every* candidate
  (seeded by the seed and the request, identical for every system);
- Dev = |1 − Σ pCTR / Σ CTR| over the allocated ads: the system's own pCTR (rank stage / q̂)
  against their true CTR in the list.

``source="evaluator"`` — the paper's protocol:

- eCTR, eRPM and Ψ with q = the EGA reward model's permutation-aware pCTR (Eq. 18) of the
  allocated list, utilities with v = b (the paper's truthful-bidder reading);
- Recall@50 and AUC against the logged labels (exposed clicks and platform labels);
- Dev against the logged clicks of the K exposed ads (Σ pCTR of the exposed ads / Σ clicks).

Without an evaluator the evaluator row keeps Recall@50, AUC and Dev (they read logs only) and
reports eCTR, eRPM and Ψ as null.

Regret is computed once per source with :func:`egakit.auction.regret`; the second pass replays
the first pass's mechanism outputs (:class:`ReplayMechanism`), since both re-run the mechanism on
exactly the same misreports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from egakit.auction.mechanism import index_batch
from egakit.auction.regret import regret
from egakit.batch import RequestBatch
from egakit.evaluation.config import METRICS
from egakit.evaluation.systems import System, SystemRun
from egakit.metrics import AUC, Deviation, ExpectedCTR, ExpectedRPM, PsiMetric, RecallAtK
from egakit.metrics.ranking import DEFAULT_RECALL_K
from egakit.model.ega_v1 import EGAV1, Encoding
from egakit.sim.oracle import Oracle


@dataclass
class EvalContext:
    """What regret re-runs and scores, for ``R`` rows of one request batch.

    ``inner`` is the system's bid-free context with its rows already selected (the mechanism
    re-runs on it for every misreport). ``batch`` and ``eval_encoding`` are the *whole* batch and
    the evaluator's encoding of it, never copied per misreport: ``rows`` (R,) says which of their
    rows each misreport row stands for, and the CTR functions read only the winners' entries
    (a stacked misreport call covers thousands of rows of the same few requests, and copying the
    batch's (B, N, ·) tensors for each would cost more than the mechanism itself).
    """

    batch: RequestBatch
    inner: Any
    eval_encoding: Optional[Encoding]
    rows: Tensor

    @classmethod
    def of(cls, batch: RequestBatch, inner: Any, eval_encoding: Optional[Encoding]) -> "EvalContext":
        return cls(batch, inner, eval_encoding, torch.arange(batch.batch_size, device=batch.cand_ids.device))

    def index_batch(self, rows: Tensor) -> "EvalContext":
        """The context of rows ``rows`` of this one (used by :func:`index_batch`)."""
        return EvalContext(self.batch, index_batch(self.inner, rows), self.eval_encoding, self.rows[rows])

    def winner_ids(self, winners: Tensor) -> Tensor:
        """(R, K) ad ids of the winners' candidate positions, −1 on empty slots."""
        return winner_ids(self.batch, winners, self.rows)

    def winner_states(self, winners: Tensor) -> tuple[Tensor, Tensor]:
        """The evaluator's H_ad at the winners (R, K, d) and its e_u (R, d)."""
        enc = self.eval_encoding
        return enc.h_ad[self.rows.unsqueeze(1), winners.clamp_min(0)], enc.e_u[self.rows]


class BoundMechanism:
    """A :class:`System` as a :class:`~egakit.auction.mechanism.Mechanism` over :class:`EvalContext`."""

    def __init__(self, system: System) -> None:
        self.system = system

    def allocate(self, bids: Tensor, batch_context: EvalContext) -> tuple[Tensor, Tensor]:
        return self.system.allocate(bids, batch_context.inner)


class ReplayMechanism:
    """Records a mechanism's outputs, then replays them for an identical sequence of calls.

    Each replayed call checks the bids' shape and checksum against the recorded one and falls
    back to running the mechanism when they differ, so a replay is never silently wrong.
    """

    def __init__(self, inner: BoundMechanism) -> None:
        self.inner = inner
        self.calls: list[tuple[tuple, float, Tensor, Tensor]] = []
        self.replaying = False
        self.position = 0

    @staticmethod
    def _key(bids: Tensor) -> tuple[tuple, float]:
        weights = torch.arange(1, bids.shape[-1] + 1, dtype=torch.float64, device=bids.device)
        return tuple(bids.shape), float((bids.double() * weights).sum())

    def replay(self) -> None:
        self.replaying, self.position = True, 0

    def allocate(self, bids: Tensor, batch_context: EvalContext) -> tuple[Tensor, Tensor]:
        shape, checksum = self._key(bids)
        if self.replaying:
            if self.position < len(self.calls):
                rec_shape, rec_sum, winners, prices = self.calls[self.position]
                self.position += 1
                if rec_shape == shape and rec_sum == checksum:
                    return winners, prices
            return self.inner.allocate(bids, batch_context)
        winners, prices = self.inner.allocate(bids, batch_context)
        self.calls.append((shape, checksum, winners, prices))
        return winners, prices


def winner_ids(batch: RequestBatch, winners: Tensor, rows: Optional[Tensor] = None) -> Tensor:
    """(R, K) ad ids of ``winners`` (candidate positions of batch rows ``rows``, default every
    row), −1 on empty slots."""
    rows = torch.arange(batch.batch_size, device=winners.device) if rows is None else rows
    ids = batch.cand_ids[rows.unsqueeze(1), winners.clamp_min(0)]
    return torch.where(winners >= 0, ids, torch.full_like(ids, -1))


class SourceMetrics:
    """The six metrics of one source, as torchmetrics accumulators."""

    def __init__(self) -> None:
        self.recall = RecallAtK(DEFAULT_RECALL_K)
        self.auc = AUC()
        self.ectr = ExpectedCTR()
        self.erpm = ExpectedRPM()
        self.psi = PsiMetric()
        self.dev = Deviation()
        self.has_q = False  # eCTR / eRPM / Ψ were updated
        self.has_auc = False

    def compute(self) -> dict[str, Optional[float]]:
        def value(metric, present: bool = True) -> Optional[float]:
            if not present:
                return None
            v = float(metric.compute())
            return v if math.isfinite(v) else None

        out = {
            METRICS[0]: value(self.recall),
            "auc": value(self.auc, self.has_auc),
            "ectr": value(self.ectr, self.has_q),
            "erpm": value(self.erpm, self.has_q),
            "psi": value(self.psi, self.has_q),
            "dev": value(self.dev),
        }
        assert tuple(out) == METRICS
        return out


class Scorer:
    """Accumulates both sources' metrics of one system over one seed's batches.

    Args:
        oracle: the world's truth; evaluator: the EGA reward-phase model (None: no evaluator);
        gammas: misreports; psi_requests: Ψ over at most this many requests (None: all);
        seed: seeds the oracle's sampled labels.
    """

    def __init__(
        self,
        oracle: Oracle,
        evaluator: Optional[EGAV1],
        gammas: Sequence[float],
        psi_requests: Optional[int],
        seed: int,
    ) -> None:
        self.oracle = oracle
        self.evaluator = evaluator
        self.gammas = tuple(gammas)
        self.psi_budget = psi_requests
        self.seed = seed
        self.sources = {"oracle": SourceMetrics(), "evaluator": SourceMetrics()}
        self.requests = 0

    # ------------------------------------------------------------------ label streams
    def oracle_labels(self, batch: RequestBatch) -> Tensor:
        """Clicks (B, N) sampled from the true slot-free CTR of every candidate."""
        return self.oracle.sampled_clicks(batch, self.seed)

    # ------------------------------------------------------------------ ctr functions
    def oracle_ctr(self, winners: Tensor, ctx: EvalContext) -> Tensor:
        truth = self.oracle.context_from_batch(ctx.batch).select(ctx.rows)
        return self.oracle.list_ctr(truth, ctx.winner_ids(winners)).to(torch.float32)

    def evaluator_ctr(self, winners: Tensor, ctx: EvalContext) -> Tensor:
        q = torch.sigmoid(self.evaluator.evaluator(*ctx.winner_states(winners)))  # Eq. 18
        return torch.where(winners >= 0, q, torch.zeros_like(q))

    # ------------------------------------------------------------------ one batch
    @torch.no_grad()
    def update(self, system: System, batch: RequestBatch, run: SystemRun) -> None:
        o, e = self.sources["oracle"], self.sources["evaluator"]
        mask, winners, prices = batch.cand_mask, run.winners, run.prices
        filled = winners >= 0
        self.requests += batch.batch_size

        # oracle: truth
        q_true = self.oracle.slot_ctr(batch, winner_ids(batch, winners)).to(prices.dtype)
        o.ectr.update(q_true, filled)
        o.erpm.update(q_true, prices, filled)
        truth_labels = self.oracle_labels(batch)
        o.recall.update(run.ranking, truth_labels, mask)
        o.auc.update(run.pctr, truth_labels, mask)
        o.has_auc = True
        o.dev.update(run.pctr.gather(1, winners.clamp_min(0)), q_true, filled)
        o.has_q = True

        # evaluator: the paper's protocol
        logged = batch.labels * batch.label_mask
        e.recall.update(run.ranking, logged, mask)
        if bool(batch.label_mask.any()):
            e.auc.update(run.pctr, batch.labels, batch.label_mask)
            e.has_auc = True
        e.dev.update(run.pctr.gather(1, batch.exposed_index), batch.exposed_clicks)
        enc = None
        if self.evaluator is not None:
            enc = self.evaluator.encode(batch)
            q_eval = self.evaluator.evaluate(batch, winners.clamp_min(0), encoding=enc)
            q_eval = torch.where(filled, q_eval, torch.zeros_like(q_eval))
            e.ectr.update(q_eval, filled)
            e.erpm.update(q_eval, prices, filled)
            e.has_q = True

        self._update_psi(system, batch, run, enc)

    def _update_psi(self, system: System, batch: RequestBatch, run: SystemRun, enc: Optional[Encoding]) -> None:
        rows = batch.batch_size if self.psi_budget is None else min(self.psi_budget, batch.batch_size)
        if rows <= 0:
            return
        if self.psi_budget is not None:
            self.psi_budget -= rows
        sel = torch.arange(rows, device=batch.bids.device)
        ctx = index_batch(EvalContext.of(batch, run.context, enc), sel)
        sub = index_batch(batch, sel)
        bids, valid = sub.bids, sub.cand_mask
        advertisers = system.contenders(bids, ctx.inner, run.winners[sel], max(self.gammas)) & valid
        mechanism = ReplayMechanism(BoundMechanism(system))
        true_values = self.oracle.values(torch.where(valid, sub.cand_ids, torch.full_like(sub.cand_ids, -1))).to(bids.dtype)
        result = regret(
            mechanism, true_values, self.oracle_ctr, ctx, bids=bids, valid=valid, gammas=self.gammas, advertisers=advertisers
        )
        self.sources["oracle"].psi.update(result)
        if self.evaluator is not None:
            mechanism.replay()
            result = regret(
                mechanism, bids, self.evaluator_ctr, ctx, bids=bids, valid=valid, gammas=self.gammas, advertisers=advertisers
            )
            self.sources["evaluator"].psi.update(result)

    def compute(self) -> dict[str, dict[str, Optional[float]]]:
        return {name: metrics.compute() for name, metrics in self.sources.items()}


