"""The multi-stage cascade (MCA, V1 §1 Fig. 1 and §5.1.3) as one auction mechanism.

    recall   top-R candidates by the SASRec score              (bid-free)
    pre-rank top-M of those by the DSSM pCTR (· bid for "ecpm")
    rank     DIN pCTR of the M
    auction  GSP on pCTR · bid over the M: K winners, each pays the next score / own pCTR

:class:`CascadeMechanism` holds only the selection logic and takes the three stages' scores as its
batch context (:class:`CascadeContext`), so it plugs into :func:`egakit.auction.regret` like any
:class:`~egakit.auction.mechanism.Mechanism`: every misreport re-runs the whole funnel — recall,
pre-rank cut, rank, GSP — on the changed bids. The neural scores do not read bids, so computing
them once per request (:meth:`MCAPipeline.context`) and re-running the selection is exactly
re-running the cascade. Stage sizes R, M and K are arguments (configs).

Regret only needs the advertisers that could win under some misreport γ ≤ γ_max
(:meth:`CascadeMechanism.contenders`): recalled, able to pass the pre-rank cut at γ_max · b, and
able to reach the (K+1)-th best rank score of the truthful kept set — a necessary condition, so
no possible deviation is missed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from egakit.auction.position import gsp, top_ranked
from egakit.batch import RequestBatch

#: How the pre-rank stage orders the recalled ads: by pCTR, or by eCPM = pCTR · bid (advertising
#: pre-rankers usually align with the auction's ranking).
PRERANK_SCORES = ("ctr", "ecpm")


@dataclass
class CascadeContext:
    """Bid-free stage outputs of a batch (all (B, N); batch-first, so ``index_batch`` selects rows).

    recall_score: SASRec score; prerank_ctr: DSSM pCTR; rank_ctr: DIN pCTR; mask: real candidates.
    """

    recall_score: Tensor
    prerank_ctr: Tensor
    rank_ctr: Tensor
    mask: Tensor


def top_mask(scores: Tensor, mask: Tensor, k: int) -> Tensor:
    """(B, N) bool: each row's ``k`` best ``scores`` among ``mask`` (all of them when fewer);
    ties go to the lower index, as in the auctions."""
    masked = torch.where(mask, scores, torch.full_like(scores, float("-inf")))
    idx, _ = top_ranked(masked, min(k, scores.shape[1]))
    chosen = torch.zeros_like(mask)
    chosen.scatter_(1, idx, True)
    return chosen & mask


def kth_best(scores: Tensor, mask: Tensor, k: int) -> Tensor:
    """(B, 1): the k-th best score among ``mask`` per row, −inf where fewer than k are valid."""
    masked = torch.where(mask, scores, torch.full_like(scores, float("-inf")))
    if k > scores.shape[1]:
        return torch.full_like(scores[:, :1], float("-inf"))
    return torch.topk(masked, k, dim=1).values[:, k - 1 : k]


def won_mask(winners: Tensor, n: int) -> Tensor:
    """(B, n) bool: the candidates that hold a slot in ``winners`` (B, K) (−1 = empty slot)."""
    counts = torch.zeros(winners.shape[0], n, dtype=torch.long, device=winners.device)
    counts.scatter_add_(1, winners.clamp_min(0), (winners >= 0).long())
    return counts > 0


class CascadeMechanism:
    """Recall top-R → pre-rank top-M → rank → GSP, as a :class:`~egakit.auction.mechanism.Mechanism`.

    Args:
        recall_size: R, candidates kept by recall.
        prerank_size: M, candidates kept by pre-rank (M ≤ R).
        K: slots (K ≤ M).
        prerank_score: ``"ecpm"`` (pCTR · bid) or ``"ctr"``.
    """

    def __init__(self, recall_size: int, prerank_size: int, K: int, prerank_score: str = "ecpm") -> None:
        if not 1 <= K <= prerank_size <= recall_size:
            raise ValueError(f"stage sizes need 1 <= K <= prerank_size <= recall_size, got K={K}, M={prerank_size}, R={recall_size}")
        if prerank_score not in PRERANK_SCORES:
            raise ValueError(f"prerank_score must be one of {PRERANK_SCORES}, got {prerank_score!r}")
        self.recall_size = recall_size
        self.prerank_size = prerank_size
        self.K = K
        self.prerank_score = prerank_score

    # -------------------------------------------------------------- stages
    def recalled(self, ctx: CascadeContext) -> Tensor:
        """(B, N) bool: the recall stage's top R (bid-free)."""
        return top_mask(ctx.recall_score, ctx.mask, self.recall_size)

    def prerank_scores(self, bids: Tensor, ctx: CascadeContext) -> Tensor:
        return ctx.prerank_ctr * bids if self.prerank_score == "ecpm" else ctx.prerank_ctr

    def kept(self, bids: Tensor, ctx: CascadeContext, recalled: Optional[Tensor] = None) -> Tensor:
        """(B, N) bool: the pre-rank stage's top M among the recalled."""
        recalled = self.recalled(ctx) if recalled is None else recalled
        return top_mask(self.prerank_scores(bids, ctx), recalled, self.prerank_size)

    def allocate(self, bids: Tensor, batch_context: CascadeContext) -> tuple[Tensor, Tensor]:
        """Winners (B, K) candidate positions and GSP per-click prices (B, K) (IR: p ≤ b)."""
        ctx = batch_context
        kept = self.kept(bids, ctx)
        out = gsp(bids, ctx.rank_ctr, kept, self.K)
        return out.winners, out.prices

    # -------------------------------------------------------------- evaluation helpers
    def stage_ranking(self, ctx: CascadeContext) -> Tensor:
        """(B, N) keys (higher = better, −inf on padding) of the pre-rank stage's output order: the
        recalled ads by pre-rank pCTR, then the rest by recall score (Recall@50 reads this)."""
        recalled = self.recalled(ctx)
        secondary = torch.where(recalled, ctx.prerank_ctr, ctx.recall_score)
        secondary = torch.where(ctx.mask, secondary, torch.full_like(secondary, float("-inf")))
        by_score = torch.sort(secondary, dim=1, descending=True, stable=True).indices
        tier = (recalled.long() + ctx.mask.long()).gather(1, by_score)  # 2 recalled, 1 other, 0 padding
        order = by_score.gather(1, torch.sort(tier, dim=1, descending=True, stable=True).indices)
        n = ctx.mask.shape[1]
        keys = torch.empty_like(secondary)
        keys.scatter_(1, order, (n - torch.arange(n, device=keys.device, dtype=keys.dtype)).expand_as(keys).contiguous())
        return torch.where(ctx.mask, keys, torch.full_like(keys, float("-inf")))

    def contenders(self, bids: Tensor, ctx: CascadeContext, max_gamma: float, winners: Optional[Tensor] = None) -> Tensor:
        """(B, N) bool: ads that could win a slot under some misreport γ ≤ ``max_gamma`` (plus the
        truthful ``winners`` when given). A necessary condition (module docstring)."""
        recalled = self.recalled(ctx)
        kept = self.kept(bids, ctx, recalled)
        m_th = kth_best(self.prerank_scores(bids, ctx), recalled, self.prerank_size)
        can_keep = kept | (recalled & (self.prerank_scores(bids * max_gamma, ctx) >= m_th))
        rank_scores = ctx.rank_ctr * bids
        k1_th = kth_best(rank_scores, kept, self.K + 1)
        out = can_keep & (ctx.rank_ctr * bids * max_gamma >= k1_th)
        if winners is not None:
            out = out | won_mask(winners, out.shape[1])
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(recall_size={self.recall_size}, prerank_size={self.prerank_size}, "
            f"K={self.K}, prerank_score={self.prerank_score!r})"
        )


class MCAPipeline(nn.Module):
    """The three trained stages plus the cascade mechanism.

    ``context(batch)`` runs SASRec, DSSM and DIN on every candidate once (no grad) and returns the
    :class:`CascadeContext`; ``mechanism.allocate(bids, context)`` runs the funnel and GSP.
    """

    def __init__(self, recall: nn.Module, prerank: nn.Module, rank: nn.Module, mechanism: CascadeMechanism) -> None:
        super().__init__()
        self.recall = recall
        self.prerank = prerank
        self.rank = rank
        self.mechanism = mechanism

    @property
    def uses_cross_features(self) -> bool:
        return any(getattr(getattr(m, "config", None), "use_cross_features", False) for m in (self.recall, self.prerank, self.rank))

    @torch.no_grad()
    def context(self, batch: RequestBatch) -> CascadeContext:
        mask = batch.cand_mask
        zero = lambda t: torch.where(mask, t, torch.zeros_like(t))  # noqa: E731
        return CascadeContext(
            recall_score=zero(self.recall(batch)),
            prerank_ctr=zero(torch.sigmoid(self.prerank(batch))),
            rank_ctr=zero(torch.sigmoid(self.rank(batch))),
            mask=mask,
        )
