"""Shared helpers of the metrics: float64 sum states, shape checks, zero-safe ratios."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torchmetrics import Metric

STATE_DTYPE = torch.float64  # sums over a whole test set: keep them in double precision


def add_sum_state(metric: Metric, name: str) -> None:
    """A scalar float64 state that DDP sums across ranks."""
    metric.add_state(name, default=torch.tensor(0.0, dtype=STATE_DTYPE), dist_reduce_fx="sum")


def check_same_shape(**tensors: Optional[Tensor]) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shapes must match, got {shapes}")


def as_mask(mask: Optional[Tensor], like: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(like, dtype=torch.bool)
    if mask.dtype != torch.bool:
        raise TypeError("mask must be a bool tensor")
    return mask


def ratio_or(num: float, den: float, *, zero_over_zero: float) -> float:
    """``num / den`` for ``den > 0``; ``zero_over_zero`` when both are 0 (or ``num ≤ 0 ≥ den``),
    ``inf`` when only the numerator is positive. Never divides by zero."""
    if den > 0:
        return num / den
    return zero_over_zero if num <= 0 else math.inf
