"""Prediction heads: MLP_ctr of Eq. 16 and the small MLPs of Eq. 18–19.

    q̂_i = σ(MLP_ctr([h_i; e_u]))                         (Eq. 16)

Heads return **logits**; the caller applies σ (BCE-with-logits is the stable loss). Hidden layers
use GELU (the paper names Dice only for Eq. 7 and Eq. 10; a batch-statistics activation inside a
per-candidate head would also need the padding mask).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int = 1) -> nn.Sequential:
    """Linear → GELU → … → Linear(out_dim); ``hidden`` may be empty (a single Linear)."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.GELU()]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class CTRHead(nn.Module):
    """MLP([h_i; e_u]) → logit (Eq. 16), hidden sizes ``hidden`` (paper: 128 → 32 → 1).

    The first Linear on the concatenation is split as W_h h_i + W_u e_u, so the user vector is
    projected once per request instead of being copied N times (same function, linear memory).

    forward(h (B, N, d_item), e_u (B, d_user)) → logits (B, N).
    """

    def __init__(self, d_item: int, d_user: int, hidden: Sequence[int]) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("CTRHead needs at least one hidden layer")
        self.item_in = nn.Linear(d_item, hidden[0])
        self.user_in = nn.Linear(d_user, hidden[0], bias=False)
        self.act = nn.GELU()
        self.rest = mlp(hidden[0], hidden[1:], 1)

    @torch.no_grad()
    def set_prior(self, ctr: float) -> None:
        """Start the output bias at logit(ctr), the labelled click rate ("prior" init)."""
        if not 0.0 < ctr < 1.0:
            raise ValueError(f"prior_ctr must be in (0, 1), got {ctr}")
        self.rest[-1].bias.fill_(math.log(ctr / (1.0 - ctr)))

    def forward(self, h: Tensor, e_u: Tensor) -> Tensor:
        first = self.item_in(h) + self.user_in(e_u).unsqueeze(1)
        return self.rest(self.act(first)).squeeze(-1)


class ObservationRates(nn.Module):
    """Learned click-observation rates β_s of the K exposure slots and of platform labels.

    P(click | source s) = β_s · q̂ (:mod:`egakit.training.label_bias`); β_{slot 0} = 1 anchors q̂
    as the top-slot CTR, the others are σ(w_s) ∈ (0, 1). Trained in pre-training with the encoder;
    :meth:`position_ctr` (the slots' β, made non-increasing) are the position effects of the
    critical-bid payments (:mod:`egakit.model.critical_payment`).
    """

    def __init__(self, K: int, init_rate: float = 0.5) -> None:
        super().__init__()
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        if not 0.0 < init_rate < 1.0:
            raise ValueError(f"init_rate must be in (0, 1), got {init_rate}")
        self.K = K
        self.logit_rate = nn.Parameter(torch.full((K,), float(torch.logit(torch.tensor(init_rate)))))

    def log_rates(self) -> Tensor:
        """log β (K + 1,): slots 0..K−1 (slot 0 ≡ 0), then platform."""
        return torch.cat([self.logit_rate.new_zeros(1), F.logsigmoid(self.logit_rate)])

    def rates(self) -> Tensor:
        """β (K + 1,): slots 0..K−1, then platform."""
        return self.log_rates().exp()

    def position_ctr(self) -> Tensor:
        """x_k (K,): the slots' β as position effects, forced non-increasing (cummin)."""
        return self.rates()[: self.K].cummin(0).values
