"""The evaluated systems behind one interface: run a batch, re-run the mechanism on other bids.

Every system turns a :class:`~egakit.batch.RequestBatch` into a :class:`SystemRun`: the ranking
that Recall@50 reads, the pCTR that AUC and Dev read, the K winners (candidate positions) and
their per-click prices, and a bid-free *context* with which :meth:`System.allocate` re-runs the
whole mechanism on misreported bids (Ψ, :func:`egakit.auction.regret`). :meth:`System.contenders`
names the ads that could win under some misreport γ ≤ γ_max (a necessary condition per mechanism,
so regret tests every possible deviation and nothing more).

- :class:`CascadeSystem` — MCA / FS-LTR: SASRec → DSSM → DIN → GSP
  (:class:`~egakit.baselines.cascade.CascadeMechanism`).
- :class:`EGASystem` — EGA-V1 through :meth:`~egakit.model.ega_v1.EGAV1.allocate` (generator +
  payment network; GSP on q̂·b for the −auf variant).
- :class:`OracleCTRSystem` — the classic references: GSP or VCG position auctions on the world's
  *true* slot-free CTR with the true position effects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch
from torch import Tensor

from egakit.auction.mechanism import PositionContext, PositionMechanism
from egakit.auction.regret import tested_advertisers
from egakit.baselines.cascade import CascadeContext, MCAPipeline, kth_best, won_mask
from egakit.batch import RequestBatch
from egakit.model.ega_v1 import EGAV1, Encoding
from egakit.sim.click_model import posbias
from egakit.sim.oracle import Oracle


@dataclass
class SystemRun:
    """One batch through a system. ranking, pctr: (B, N); winners, prices: (B, K); context: the
    bid-free batch context of :meth:`System.allocate`."""

    ranking: Tensor
    pctr: Tensor
    winners: Tensor
    prices: Tensor
    context: Any


class System(Protocol):
    uses_cross_features: bool

    def run(self, batch: RequestBatch) -> SystemRun: ...

    def allocate(self, bids: Tensor, context: Any) -> tuple[Tensor, Tensor]: ...

    def contenders(self, bids: Tensor, context: Any, winners: Tensor, max_gamma: float) -> Tensor: ...


def ids_to_positions(cand_ids: Tensor, ids: Tensor) -> Tensor:
    """Candidate-axis positions (B, K) of ad ids (B, K) in ``cand_ids`` (B, N); −1 for −1."""
    match = cand_ids.unsqueeze(1) == ids.unsqueeze(2)  # (B, K, N)
    found = match.any(-1)
    missing = (ids >= 0) & ~found
    if bool(missing.any()):
        row = int(missing.nonzero()[0, 0])
        raise ValueError(f"request row {row}: an allocated ad id is not among its candidates")
    return torch.where(found, match.float().argmax(-1), torch.full_like(ids, -1))


# ----------------------------------------------------------------------------------------------
class CascadeSystem:
    """MCA or FS-LTR (same pipeline; the checkpoints differ)."""

    def __init__(self, pipeline: MCAPipeline) -> None:
        self.pipeline = pipeline.eval()
        self.mechanism = pipeline.mechanism
        self.uses_cross_features = pipeline.uses_cross_features

    @torch.no_grad()
    def run(self, batch: RequestBatch) -> SystemRun:
        ctx = self.pipeline.context(batch)
        winners, prices = self.mechanism.allocate(batch.bids, ctx)
        return SystemRun(self.mechanism.stage_ranking(ctx), ctx.rank_ctr, winners, prices, ctx)

    def allocate(self, bids: Tensor, context: CascadeContext) -> tuple[Tensor, Tensor]:
        return self.mechanism.allocate(bids, context)

    def contenders(self, bids: Tensor, context: CascadeContext, winners: Tensor, max_gamma: float) -> Tensor:
        return self.mechanism.contenders(bids, context, max_gamma, winners)


# ----------------------------------------------------------------------------------------------
@dataclass
class EGAContext:
    """The request and its (bid-free) encoding: the generator re-runs on it for any bids."""

    batch: RequestBatch
    encoding: Encoding
    slot_tokens: Optional[Tensor] = None  # T of Eq. 17 (bid-free); None for −auf (GSP)


class EGASystem:
    """EGA-V1 (or an ablation) called through :meth:`EGAV1.allocate`."""

    def __init__(self, model: EGAV1) -> None:
        self.model = model.eval()
        self.uses_cross_features = bool(model.config.use_cross_features)

    @torch.no_grad()
    def run(self, batch: RequestBatch) -> SystemRun:
        enc = self.model.encode(batch)
        # Misreports re-run the generator on the same slot tokens T: they never read bids.
        tokens = None if self.model.config.allocation == "gsp" else self.model.slot_tokens(enc)
        ctx = EGAContext(batch, enc, tokens)
        winners, prices = self.allocate(batch.bids, ctx)
        return SystemRun(enc.q_hat, enc.q_hat, winners, prices, ctx)

    @torch.no_grad()
    def allocate(self, bids: Tensor, context: EGAContext) -> tuple[Tensor, Tensor]:
        ids, prices = self.model.allocate(
            context.batch, bids=bids, encoding=context.encoding, slot_tokens=context.slot_tokens
        )
        return ids_to_positions(context.batch.cand_ids, ids), prices

    @torch.no_grad()
    def contenders(self, bids: Tensor, context: EGAContext, winners: Tensor, max_gamma: float) -> Tensor:
        """Ads that could win some slot at γ ≤ ``max_gamma``.

        AucFormer (Eq. 17): slot k goes to the best remaining s[n, k] and at most K − 1 ads are
        removed before it, so a winner of slot k has s[n, k] at least the K-th best of the *other*
        ads, which is at least the (K+1)-th best truthful score of column k. Only the bid term
        e^{w_z}·q̂·b moves with the ad's own bid (non-decreasingly), so testing it at γ_max is
        enough. −auf (GSP on q̂·b): the K-th best truthful score (an ad outside the top K leaves
        the others' order unchanged).
        """
        enc, mask, K = context.encoding, context.encoding.cand_mask, self.model.config.K
        if self.model.config.allocation == "gsp":
            score = enc.q_hat * bids
            out = mask & (score * max_gamma >= kth_best(score, mask, K))
        else:
            gen = self.model.generator
            t = context.slot_tokens if context.slot_tokens is not None else self.model.slot_tokens(enc)
            truthful = gen.scores(enc.h_ad, t, enc.q_hat, bids)  # (B, N, K)
            raised = truthful + (gen.bid_bias(enc.q_hat, bids) * (max_gamma - 1.0)).unsqueeze(-1)
            masked = truthful.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            if K + 1 <= masked.shape[1]:
                threshold = torch.topk(masked, K + 1, dim=1).values[:, K : K + 1, :]  # (B, 1, K)
            else:
                threshold = torch.full_like(masked[:, :1, :], float("-inf"))
            out = mask & (raised >= threshold).any(-1)
        return out | won_mask(winners, mask.shape[1])


# ----------------------------------------------------------------------------------------------
class OracleCTRSystem:
    """GSP or VCG ranking by the *true* slot-free CTR × bid, with the truth's position effects
    θ_k = posbias(k) — the classic separable position auction (a reference, not a learner)."""

    uses_cross_features = False

    def __init__(self, oracle: Oracle, mechanism: str, K: int) -> None:
        self.oracle = oracle
        self.mechanism = PositionMechanism(mechanism)
        self.K = K
        self.theta = posbias(oracle.truth.params.posbias_decay, K)

    @torch.no_grad()
    def run(self, batch: RequestBatch) -> SystemRun:
        ctr = self.oracle.pointwise_ctr(batch).to(batch.bids.dtype)
        ctx = PositionContext(ctr=ctr, slot_ctr=self.theta.to(ctr), mask=batch.cand_mask, K=self.K)
        winners, prices = self.mechanism.allocate(batch.bids, ctx)
        return SystemRun(ctr, ctr, winners, prices, ctx)

    def allocate(self, bids: Tensor, context: PositionContext) -> tuple[Tensor, Tensor]:
        return self.mechanism.allocate(bids, context)

    def contenders(self, bids: Tensor, context: PositionContext, winners: Tensor, max_gamma: float) -> Tensor:
        return tested_advertisers(self.mechanism, bids, context, winners, context.mask, max_gamma)


def flops_per_request(system: System, batch: RequestBatch) -> Optional[float]:
    """FLOPs of ``system.run`` per request, counted by ``torch.utils.flop_counter`` (the
    dispatcher's matmul-type ops; ops it has no formula for count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        system.run(batch)
    total = counter.get_total_flops()
    return float(total) / max(batch.batch_size, 1) if total else None
