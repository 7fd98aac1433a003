"""Position auctions with separable CTRs: GSP and VCG (docs/design.md §6).

A request has N candidate ads (``mask`` marks the real ones) with per-click bids ``b_i`` and an
ad-specific click rate ``ctr_i``; slot ``k`` multiplies it by a position effect ``θ_k``
(``slot_ctr``, positive, non-increasing), so ad i in slot k is clicked with ``ctr_i · θ_k``.

Both mechanisms rank by score ``s_i = ctr_i · b_i`` (ties → lower candidate index) and give slot
``k`` to the k-th ranked ad. Prices are per click (charged on a click, like the bids):

- GSP: ``p_k = s_(k+1) / ctr_(k)`` — the next-ranked ad's score over the winner's own ctr
  (``s_(K+1)`` for the last slot, 0 when there is no next ad).
- VCG: the winner of slot k pays its externality ``Σ_{j=k+1}^{K+1} (θ_{j-1} − θ_j) s_(j)``
  (slots 1-indexed, ``θ_{K+1} = 0``, ``s_(K+1)`` = the first loser's score or 0), per click:
  divided by its clicks ``ctr_(k) θ_k``.

Both are IR (``p_k ≤ b_(k)``). Only the top ``K + 1`` ads are ever needed, so the work is a
``topk`` plus a few O(N) passes: memory linear in N, no N log N sort and nothing N × N.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

GSP = "gsp"
VCG = "vcg"
MECHANISMS = (GSP, VCG)


@dataclass(frozen=True)
class AuctionResult:
    """Outcome of a batch of position auctions.

    ``winners``: (B, K) int64, candidate-axis position of the ad in slot k.
    ``prices``: (B, K) per-click price of the ad in slot k.
    """

    winners: Tensor
    prices: Tensor


def _first_bad_row(bad: Tensor) -> int:
    return int(bad.reshape(bad.shape[0], -1).any(1).nonzero()[0, 0])


def expand_slot_ctr(slot_ctr: Tensor, B: int, K: int) -> Tensor:
    """Validate ``slot_ctr`` ((K,) or (B, K), positive, non-increasing) and return it as (B, K)."""
    if not torch.is_tensor(slot_ctr) or not slot_ctr.is_floating_point():
        raise TypeError("slot_ctr must be a floating-point tensor of shape (K,) or (B, K)")
    if slot_ctr.dim() == 1:
        slot_ctr = slot_ctr.unsqueeze(0).expand(B, -1)
    if slot_ctr.dim() != 2 or slot_ctr.shape[1] != K or slot_ctr.shape[0] not in (1, B):
        raise ValueError(f"slot_ctr must have shape ({K},) or ({B}, {K}), got {tuple(slot_ctr.shape)}")
    slot_ctr = slot_ctr.expand(B, K)
    bad = ~torch.isfinite(slot_ctr) | (slot_ctr <= 0)
    if bad.any():
        raise ValueError(f"slot_ctr: row {_first_bad_row(bad)} has a non-positive or non-finite position effect")
    if K > 1:
        rising = slot_ctr[:, 1:] > slot_ctr[:, :-1]
        if rising.any():
            raise ValueError(f"slot_ctr: row {_first_bad_row(rising)} is not non-increasing over slots")
    return slot_ctr


def validate_inputs(bids: Tensor, ctr: Tensor, mask: Tensor, K: int) -> None:
    """Check shapes and values; raise ``ValueError`` naming the field and the first bad row.

    Valid candidates need finite bids > 0 and finite ctr ≥ 0 (padding is not inspected); every
    row needs at least ``K`` valid candidates.
    """
    if not isinstance(K, int) or isinstance(K, bool) or K < 1:
        raise ValueError(f"K must be a positive int, got {K!r}")
    for name, t in (("bids", bids), ("ctr", ctr)):
        if not torch.is_tensor(t) or not t.is_floating_point() or t.dim() != 2:
            raise TypeError(f"{name} must be a 2-D floating-point tensor (B, N)")
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        raise TypeError("mask must be a bool tensor (B, N)")
    if ctr.shape != bids.shape or mask.shape != bids.shape:
        raise ValueError(
            f"bids, ctr and mask must share a shape (B, N); got {tuple(bids.shape)}, {tuple(ctr.shape)}, {tuple(mask.shape)}"
        )
    bad_bid = mask & ~(torch.isfinite(bids) & (bids > 0))
    if bad_bid.any():
        raise ValueError(f"bids: row {_first_bad_row(bad_bid)} has a non-positive or non-finite bid on a valid candidate")
    bad_ctr = mask & ~(torch.isfinite(ctr) & (ctr >= 0))
    if bad_ctr.any():
        raise ValueError(f"ctr: row {_first_bad_row(bad_ctr)} has a negative or non-finite ctr on a valid candidate")
    n_valid = mask.sum(1)
    short = n_valid < K
    if short.any():
        row = int(short.nonzero()[0, 0])
        raise ValueError(f"K = {K} exceeds the valid candidates of row {row} ({int(n_valid[row])} in the mask)")


def rank_scores(bids: Tensor, ctr: Tensor, mask: Tensor) -> Tensor:
    """Allocation scores ``ctr · bid`` (B, N), ``-inf`` on padding."""
    return torch.where(mask, ctr * bids, torch.full_like(bids, float("-inf")))


def top_ranked(scores: Tensor, M: int) -> tuple[Tensor, Tensor]:
    """The ``M`` best candidates per row in rank order, ties broken towards the lower index.

    ``torch.topk`` leaves the order of ties unspecified, so the set is fixed first: everything
    strictly above the M-th best score, then the lowest-index candidates equal to it. All
    passes are O(N) per row; only the M selected scores are sorted (stably).
    Returns ``(idx (B, M) int64, sorted scores (B, M))``.
    """
    B, N = scores.shape
    threshold = torch.topk(scores, M, dim=1).values[:, -1:]
    above = scores > threshold
    need = M - above.sum(1, keepdim=True)
    tie = scores == threshold
    take = above | (tie & (torch.cumsum(tie, dim=1) <= need))
    # Distinct keys, larger for lower index: topk returns the taken candidates in index order.
    key = torch.where(take, N - torch.arange(N, device=scores.device), torch.zeros((), dtype=torch.long, device=scores.device))
    idx = torch.topk(key, M, dim=1).indices
    picked = scores.gather(1, idx)
    order = torch.sort(picked, dim=1, descending=True, stable=True).indices
    return idx.gather(1, order), picked.gather(1, order)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (a zero-ctr winner is never clicked: it pays 0)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def position_auction(
    bids: Tensor,
    ctr: Tensor,
    slot_ctr: Tensor,
    mask: Tensor,
    K: int,
    mechanism: str = GSP,
) -> AuctionResult:
    """Run B position auctions with separable CTRs (see the module docstring).

    Args:
        bids: (B, N) per-click bids, > 0 on valid candidates.
        ctr: (B, N) ad-specific click rates ``ctr_i`` (≥ 0).
        slot_ctr: (K,) or (B, K) position effects ``θ_k``, positive and non-increasing.
        mask: (B, N) bool, True on real candidates.
        K: slots; every row needs at least K valid candidates (else ``ValueError``).
        mechanism: ``"gsp"`` or ``"vcg"``.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    validate_inputs(bids, ctr, mask, K)
    B, N = bids.shape
    theta = expand_slot_ctr(slot_ctr, B, K).to(bids.dtype)
    scores = rank_scores(bids, ctr.to(bids.dtype), mask)
    M = min(K + 1, N)
    idx, ranked = top_ranked(scores, M)
    winners = idx[:, :K]
    # Scores of the ads ranked 2 .. K+1 (0 where there is none: past N or padding).
    nxt = ranked[:, 1:]
    if nxt.shape[1] < K:
        nxt = torch.cat([nxt, nxt.new_zeros(B, K - nxt.shape[1])], dim=1)
    nxt = torch.where(torch.isfinite(nxt), nxt, torch.zeros_like(nxt))
    own_ctr = ctr.to(bids.dtype).gather(1, winners)
    if mechanism == GSP:
        prices = _safe_div(nxt, own_ctr)
    else:
        theta_next = torch.cat([theta[:, 1:], theta.new_zeros(B, 1)], dim=1)  # θ_{k+1}, θ_{K+1} = 0
        terms = (theta - theta_next) * nxt  # (θ_{j-1} − θ_j) s_(j) for j = k+1, 1-indexed
        externality = terms.flip(1).cumsum(1).flip(1)  # Σ over j ≥ k+1
        prices = _safe_div(externality, own_ctr * theta)
    return AuctionResult(winners=winners, prices=prices)


def gsp(bids: Tensor, ctr: Tensor, mask: Tensor, K: int) -> AuctionResult:
    """GSP without position effects: rank by ``ctr · bid``, each winner pays the next score over
    its own ctr (the cascades' last stage and EGA-V1's −auf ablation share this one call).

    GSP prices do not read ``θ``, so the position effects are all 1. Shapes as in
    :func:`position_auction`; ``ctr`` is cast to ``bids.dtype``.
    """
    ones = torch.ones(K, dtype=bids.dtype, device=bids.device)
    return position_auction(bids, ctr.to(bids.dtype), ones, mask, K, mechanism=GSP)
