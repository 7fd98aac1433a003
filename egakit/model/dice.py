"""Dice activation (DIN, Zhou et al. 2018): the φ of EGA-V1 Eq. 7 and Eq. 10.

    p(x) = σ((x − E[x]) / √(Var[x] + ε)),   Dice(x) = p(x) · x + (1 − p(x)) · α · x

E[x], Var[x] are per-feature statistics: over the mini-batch in training (with running averages
kept for evaluation), exactly as DIN. The only change is a **mask**: padding rows take no part in
the statistics, so a padded candidate can never move a real one — outputs stay invariant to extra
padding (and, since a mean is order-free, to the order of the candidates) in train and eval mode.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


class Dice(nn.Module):
    """Dice over the last dimension of ``x`` (…, F).

    Args:
        num_features: F.
        eps: ε in the normaliser.
        momentum: running-statistics update rate (as ``nn.BatchNorm``).
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: (…, F); mask: (…) bool, True = real row (None = all real) → (…, F)."""
        if self.training:
            mean, var = self._batch_statistics(x, mask)
        else:
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        p = torch.sigmoid((x - mean) * torch.rsqrt(var + self.eps))
        alpha_x = self.alpha.to(x.dtype) * x
        return alpha_x + p * (x - alpha_x)

    def _batch_statistics(self, x: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-feature mean and (biased) variance over the valid rows; updates running stats."""
        rows = x.reshape(-1, self.num_features)
        if mask is None:
            count = torch.tensor(float(rows.shape[0]), dtype=x.dtype, device=x.device)
            mean = rows.mean(0)
            var = (rows - mean).square().mean(0)
        else:
            weight = mask.reshape(-1, 1).to(x.dtype)
            count = weight.sum()
            denom = count.clamp_min(1.0)
            mean = (rows * weight).sum(0) / denom
            var = ((rows - mean).square() * weight).sum(0) / denom
        self._update_running(mean, var, count)
        return mean, var

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        """Running-average update without a host sync; a batch with no valid row changes nothing."""
        unbiased = var * (count / (count - 1.0).clamp_min(1.0))
        rate = self.momentum * (count > 0).to(self.running_mean.dtype)
        self.running_mean.add_(rate * (mean.detach().to(self.running_mean.dtype) - self.running_mean))
        self.running_var.add_(rate * (unbiased.detach().to(self.running_var.dtype) - self.running_var))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
