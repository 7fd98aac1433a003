"""Ex-post regret by bid perturbation and the IC metric Ψ (EGA-V1 §5.1.2, Eq. 34; docs/design.md §6).

For each tested advertiser i of a request, the mechanism is re-run with ``b_i`` replaced by
``γ b_i`` for every ``γ`` in ``gammas`` (default ``{0.2 j | j = 1..10}``, as in the paper), the
others' bids unchanged, and its utility ``u_i = (v_i − p_i) · CTR_i(slot)`` (Eq. 2) is scored
with ``ctr_fn``. ``regret_i = max(0, max_γ u_i(γ) − u_i(truthful))``.

Tested advertisers (``advertisers=``):

- ``"winners"``: the K winners of the truthful outcome;
- ``"winners+contenders"`` (default): the winners plus every ad that could enter the top K
  under some ``γ ≤ max(gammas)``. For a :class:`ScoredMechanism` that is an ad whose score at
  ``max(gammas) · b_i`` reaches the K-th truthful score; for any other mechanism every valid ad
  is tested (correct, only slower);
- ``"all"``: every valid ad; or a (B, N) bool tensor chosen by the caller.

Ψ is a ratio of sums over all tested advertisers of all requests (docs/design.md §6; the paper prints a
mean of per-advertiser ratios, which is undefined for zero-utility advertisers):
``Ψ = Σ regret / Σ truthful utility``. :func:`psi` never divides by zero: a non-positive total
utility gives 0.0 when there is no regret and ``+inf`` when there is (a profitable deviation with
nothing to normalise it by is reported, not hidden).

All misreports are stacked along the batch axis and evaluated in as few mechanism calls as
``max_elements`` allows (rows × N bid entries per call).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from egakit.auction.mechanism import (
    Mechanism,
    PositionContext,
    ScoredMechanism,
    as_mechanism,
    index_batch,
    separable_ctr,
)

DEFAULT_GAMMAS = tuple(round(0.2 * j, 10) for j in range(1, 11))
WINNERS = "winners"
WINNERS_AND_CONTENDERS = "winners+contenders"
ALL = "all"
ADVERTISER_SETS = (WINNERS, WINNERS_AND_CONTENDERS, ALL)
DEFAULT_MAX_ELEMENTS = 1 << 24  # bid entries (rows × N) per stacked mechanism call

CtrFn = Callable[[Tensor, Any], Tensor]


def psi(regret_sum: float, utility_sum: float) -> float:
    """Ψ = ``regret_sum / utility_sum``; 0.0 if ``utility_sum ≤ 0`` and no regret, else ``inf``."""
    if utility_sum > 0:
        return float(regret_sum) / float(utility_sum)
    return 0.0 if regret_sum <= 0 else math.inf


@dataclass(frozen=True)
class RegretResult:
    """Per-advertiser regret of one batch; every tensor is (B, N).

    ``regret`` ≥ 0 and ``best_utility`` / ``best_gamma`` are defined where ``tested``
    (0 / NaN elsewhere); ``utility`` is the truthful utility (0 for losers).
    """

    regret: Tensor
    utility: Tensor
    best_utility: Tensor
    best_gamma: Tensor
    tested: Tensor

    @property
    def regret_sum(self) -> float:
        return float(self.regret[self.tested].sum())

    @property
    def utility_sum(self) -> float:
        return float(self.utility[self.tested].sum())

    @property
    def psi(self) -> float:
        """Ψ over this batch (ratio of sums, see :func:`psi`)."""
        return psi(self.regret_sum, self.utility_sum)


def slot_utilities(winners: Tensor, prices: Tensor, clicks: Tensor, values: Tensor) -> Tensor:
    """Utility of every candidate (B, N): ``(v_i − p_k) · clicks_k`` for the winner of slot k, else 0.

    ``winners``, ``prices``, ``clicks``: (B, K) (``clicks`` = the ``ctr_fn`` output), −1 = empty.
    """
    filled = winners >= 0
    w = winners.clamp_min(0)
    per_slot = torch.where(filled, (values.gather(1, w) - prices) * clicks, torch.zeros_like(prices))
    return torch.zeros_like(values).scatter_add_(1, w, per_slot.to(values.dtype))


def tested_advertisers(
    mechanism: Mechanism,
    bids: Tensor,
    batch_context: Any,
    winners: Tensor,
    valid: Tensor,
    max_gamma: float,
    advertisers: Union[str, Tensor] = WINNERS_AND_CONTENDERS,
) -> Tensor:
    """(B, N) bool: the advertisers whose misreports are tried (see the module docstring)."""
    if torch.is_tensor(advertisers):
        if advertisers.shape != bids.shape or advertisers.dtype != torch.bool:
            raise ValueError(f"advertisers as a tensor must be bool of shape {tuple(bids.shape)}")
        return advertisers & valid
    if advertisers not in ADVERTISER_SETS:
        raise ValueError(f"advertisers must be one of {ADVERTISER_SETS} or a bool tensor, got {advertisers!r}")
    won = torch.zeros_like(valid)
    filled = winners >= 0
    won.scatter_(1, winners.clamp_min(0), filled)
    if advertisers == WINNERS:
        return won
    if advertisers == ALL or not isinstance(mechanism, ScoredMechanism):
        return valid | won
    truthful = mechanism.scores(bids, batch_context)
    K = winners.shape[1]
    kth = torch.topk(truthful, K, dim=1).values[:, -1:]
    raised = mechanism.scores(bids * max_gamma, batch_context)  # own-bid scores: all ads at once
    return won | (valid & (raised >= kth))


def regret(
    mechanism: Union[str, Mechanism],
    values: Tensor,
    ctr_fn: CtrFn,
    batch_context: Any,
    *,
    bids: Optional[Tensor] = None,
    valid: Optional[Tensor] = None,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    advertisers: Union[str, Tensor] = WINNERS_AND_CONTENDERS,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> RegretResult:
    """Ex-post regret of every tested advertiser under bid misreports ``γ · b_i``.

    Args:
        mechanism: a :class:`Mechanism` (or ``"gsp"`` / ``"vcg"`` with a :class:`PositionContext`).
        values: (B, N) true per-click values ``v_i``.
        ctr_fn: ``ctr_fn(winners (R, K), batch_context of those R rows) -> (R, K)`` click rates
            of the slot winners, used for utilities (a model's evaluator pCTR or the oracle's
            truth; :func:`separable_ctr` for position auctions).
        batch_context: passed to the mechanism and ``ctr_fn``; rows are selected with
            :func:`index_batch` for the stacked misreports.
        bids: (B, N) reported bids; default ``values`` (truthful bidding).
        valid: (B, N) bool, the real candidates; default ``batch_context.mask`` when it has one,
            else every column.
        gammas: misreport multipliers, each > 0.
        advertisers: which ads to test (module docstring).
        max_elements: cap on rows × N per stacked mechanism call.
    """
    mech = as_mechanism(mechanism)
    bids = values if bids is None else bids
    if values.dim() != 2 or bids.shape != values.shape:
        raise ValueError(f"values and bids must be (B, N) of one shape, got {tuple(values.shape)} and {tuple(bids.shape)}")
    gam = torch.as_tensor(list(gammas), dtype=bids.dtype, device=bids.device)
    if gam.numel() == 0 or not bool(torch.isfinite(gam).all()) or bool((gam <= 0).any()):
        raise ValueError(f"gammas must be a non-empty sequence of finite positive numbers, got {tuple(gammas)}")
    if valid is None:
        mask = getattr(batch_context, "mask", None)
        valid = mask if torch.is_tensor(mask) and mask.shape == bids.shape else torch.ones_like(bids, dtype=torch.bool)
    B, N = bids.shape
    G = gam.numel()

    winners, prices = mech.allocate(bids, batch_context)
    utility = slot_utilities(winners, prices, ctr_fn(winners, batch_context), values)
    tested = tested_advertisers(mech, bids, batch_context, winners, valid, float(gam.max()), advertisers)

    pairs = tested.nonzero()  # (T, 2): request row, candidate
    T = pairs.shape[0]
    best_utility = torch.zeros_like(values)
    best_gamma = torch.full_like(values, float("nan"))
    if T:
        rows_per_call = max(1, max_elements // max(N, 1))
        deviated = torch.empty(T * G, dtype=values.dtype, device=values.device)
        for start in range(0, T * G, rows_per_call):
            r = torch.arange(start, min(start + rows_per_call, T * G), device=bids.device)
            t, g = r // G, r % G
            b, i = pairs[t, 0], pairs[t, 1]
            misreport = bids[b].clone()
            misreport[torch.arange(r.numel(), device=bids.device), i] *= gam[g]
            ctx = index_batch(batch_context, b)
            w, p = mech.allocate(misreport, ctx)
            clicks = ctr_fn(w, ctx)
            hit = w == i.unsqueeze(1)
            own_value = values[b, i].unsqueeze(1)
            deviated[r] = torch.where(hit, (own_value - p) * clicks, torch.zeros_like(p)).sum(1).to(values.dtype)
        per_gamma = deviated.view(T, G)
        top, arg = per_gamma.max(1)
        best_utility[pairs[:, 0], pairs[:, 1]] = top
        best_gamma[pairs[:, 0], pairs[:, 1]] = gam[arg]
    regret_t = torch.where(tested, (best_utility - utility).clamp_min(0), torch.zeros_like(utility))
    return RegretResult(regret=regret_t, utility=utility, best_utility=best_utility, best_gamma=best_gamma, tested=tested)


def ic_metric(
    mechanism: Union[str, Mechanism],
    values: Tensor,
    ctr: Tensor,
    slot_ctr: Tensor,
    mask: Tensor,
    K: int,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    *,
    bids: Optional[Tensor] = None,
    ctr_fn: Optional[CtrFn] = None,
    advertisers: Union[str, Tensor] = WINNERS_AND_CONTENDERS,
) -> float:
    """Ψ of a position auction (``"gsp"`` / ``"vcg"`` or a mechanism taking a :class:`PositionContext`).

    Utilities use ``ctr_fn`` (default :func:`separable_ctr`: ``ctr_i · slot_ctr_k``).
    """
    context = PositionContext(ctr=ctr, slot_ctr=slot_ctr, mask=mask, K=K)
    result = regret(
        mechanism,
        values,
        separable_ctr if ctr_fn is None else ctr_fn,
        context,
        bids=bids,
        valid=mask,
        gammas=gammas,
        advertisers=advertisers,
    )
    return result.psi
