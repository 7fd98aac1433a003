"""Calibration: Dev = |1 − Σ pCTR / Σ CTR| (docs/design.md §6)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torchmetrics import Metric

from egakit.metrics._common import add_sum_state, as_mask, check_same_shape, ratio_or


class Deviation(Metric):
    """Dev = |1 − Σ pCTR / Σ CTR| over every entry seen.

    ``update(pctr, ctr, mask=None)`` (any one shape): ``ctr`` is the reference — observed clicks
    or the oracle's true click probabilities. With Σ CTR = 0 the result is 0 when Σ pCTR = 0 too,
    else ``inf`` (no division by zero).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        add_sum_state(self, "pctr_sum")
        add_sum_state(self, "ctr_sum")

    def update(self, pctr: Tensor, ctr: Tensor, mask: Optional[Tensor] = None) -> None:
        check_same_shape(pctr=pctr, ctr=ctr, mask=mask)
        mask = as_mask(mask, pctr)
        self.pctr_sum += pctr[mask].double().sum()
        self.ctr_sum += ctr[mask].double().sum()

    def compute(self) -> Tensor:
        ratio = ratio_or(float(self.pctr_sum), float(self.ctr_sum), zero_over_zero=1.0)
        return torch.tensor(abs(1.0 - ratio), dtype=self.ctr_sum.dtype, device=self.ctr_sum.device)
