"""Auction-outcome metrics (EGA-V1 §5.1.2): eCTR, eRPM and the IC metric Ψ."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor
from torchmetrics import Metric

from egakit.auction.regret import RegretResult, psi
from egakit.metrics._common import add_sum_state, as_mask, check_same_shape

PERCENT = 100.0
PER_MILLE = 1000.0


class _PerRequestMean(Metric):
    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    scale = 1.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        add_sum_state(self, "total")
        add_sum_state(self, "requests")

    def _add(self, per_slot: Tensor, slot_mask: Optional[Tensor]) -> None:
        if per_slot.dim() != 2:
            raise ValueError(f"expected (B, K) per-slot values, got {tuple(per_slot.shape)}")
        slot_mask = as_mask(slot_mask, per_slot)
        self.total += torch.where(slot_mask, per_slot, torch.zeros_like(per_slot)).double().sum()
        self.requests += per_slot.shape[0]

    def compute(self) -> Tensor:
        if self.requests == 0:
            return torch.zeros((), dtype=self.total.dtype, device=self.total.device)
        return self.total / self.requests * self.scale


class ExpectedCTR(_PerRequestMean):
    """eCTR = mean over requests of Σ_slots q × 100% (§5.1.2).

    ``update(q (B, K), slot_mask (B, K) bool = all)``: ``q`` the click probability of each
    shown ad (the evaluator's permutation-aware pCTR, or the oracle's truth).
    """

    scale = PERCENT

    def update(self, q: Tensor, slot_mask: Optional[Tensor] = None) -> None:
        check_same_shape(q=q, slot_mask=slot_mask)
        self._add(q, slot_mask)


class ExpectedRPM(_PerRequestMean):
    """eRPM = mean over requests of Σ_slots q · p × 1000 (§5.1.2).

    ``update(q (B, K), prices (B, K), slot_mask (B, K) bool = all)``: ``prices`` per click.
    """

    scale = PER_MILLE

    def update(self, q: Tensor, prices: Tensor, slot_mask: Optional[Tensor] = None) -> None:
        check_same_shape(q=q, prices=prices, slot_mask=slot_mask)
        self._add(q * prices, slot_mask)


class PsiMetric(Metric):
    """Ψ = Σ regret / Σ truthful utility over every tested advertiser seen (ratio of sums, docs/design.md §6).

    ``update(regret, utility, tested=None)`` with tensors of one shape, or
    ``update(RegretResult)``. ``compute()`` follows :func:`egakit.auction.regret.psi`: 0 when the
    total utility is 0 and there is no regret, ``inf`` when there is regret; no division by zero.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        add_sum_state(self, "regret_sum")
        add_sum_state(self, "utility_sum")

    def update(self, regret: Union[Tensor, RegretResult], utility: Optional[Tensor] = None, tested: Optional[Tensor] = None) -> None:
        if isinstance(regret, RegretResult):
            regret, utility, tested = regret.regret, regret.utility, regret.tested
        if utility is None:
            raise ValueError("utility is required with a regret tensor")
        check_same_shape(regret=regret, utility=utility, tested=tested)
        tested = as_mask(tested, regret)
        self.regret_sum += regret[tested].double().sum()
        self.utility_sum += utility[tested].double().sum()

    def compute(self) -> Tensor:
        value = psi(float(self.regret_sum), float(self.utility_sum))
        return torch.tensor(value, dtype=self.regret_sum.dtype, device=self.regret_sum.device)
