"""Payments: AucFormer's payment network (V1 Eq. 19; docs/design.md §3.3) and GSP for the −auf ablation.

    p̃_{y_i} = σ(MLP_pay([h_{y_i}; q_{y_i}; log(1 + b_{−y_i})])),   p_{y_i} = p̃_{y_i} · b_{y_i}   (Eq. 19)

b_{−y_i} ∈ R^{K−1} is the bids of the other winners in slot order; it enters as log(1 + b)
because bids are log-normal (heavy-tailed) and the MLP should see them on a compressible scale.
p̃ ∈ (0, 1), so p ≤ b for every ad: individual rationality (Eq. 4) holds by construction.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from egakit.auction.position import gsp
from egakit.model.heads import mlp


def other_winners(values: Tensor, K: int) -> Tensor:
    """For each slot i, the values of the other slots in slot order: (B, K') → (B, K', K − 1).

    A list shorter than K (K' < K) is padded with zeros, read as "an empty slot that bids 0".
    """
    b, k_list = values.shape
    if k_list > K:
        raise ValueError(f"a list of {k_list} winners is longer than K={K}")
    padded = torch.cat([values, values.new_zeros(b, K - k_list)], dim=1)  # (B, K)
    others = torch.tensor(
        [[j for j in range(K) if j != i] for i in range(k_list)], dtype=torch.long, device=values.device
    ).reshape(k_list, K - 1)
    return padded[:, others]


class PaymentNet(nn.Module):
    """Payment rate network of Eq. 19.

    Args:
        d: width of h_{y_i}; K: slots; hidden: MLP_pay hidden sizes.

    forward(h_chosen (B, K, d), q_chosen (B, K), bids_chosen (B, K)) → prices (B, K), 0 ≤ p ≤ b.
    """

    def __init__(self, d: int, K: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.K = K
        self.net = mlp(d + 1 + (K - 1), hidden, 1)

    def rate(self, h_chosen: Tensor, q_chosen: Tensor, bids_chosen: Tensor) -> Tensor:
        """p̃ (B, K) ∈ (0, 1)."""
        other_bids = torch.log1p(other_winners(bids_chosen, self.K))
        features = torch.cat([h_chosen, q_chosen.unsqueeze(-1), other_bids], dim=-1)
        return torch.sigmoid(self.net(features).squeeze(-1))

    def forward(self, h_chosen: Tensor, q_chosen: Tensor, bids_chosen: Tensor) -> Tensor:
        return self.rate(h_chosen, q_chosen, bids_chosen) * bids_chosen


def gsp_allocation(q_hat: Tensor, bids: Tensor, mask: Tensor, K: int) -> tuple[Tensor, Tensor, Tensor]:
    """GSP over the set-aware pCTR (the −auf ablation): rank by q̂·b, pay the next score.

    q_hat, bids (B, N); mask (B, N) bool → idx (B, K), logz (B, K), prices (B, K) per click:
    p_k = q̂_{y_{k+1}} b_{y_{k+1}} / q̂_{y_k} (the K-th pays the best loser's score; 0 if none), ≤ b.
    The ranking and prices are :func:`egakit.auction.position.gsp`, the cascades' GSP; the IR cap
    ``min(p, b)`` only guards floating-point rounding when the next score ties the winner's.
    logz is the generator-style sequential log-probability (softmax of q̂·b over the remaining
    valid candidates). Ties break to the lower index, as in ``egakit.kernels.slot_argmax``.
    Raises ValueError when a request has fewer than K valid candidates.
    """
    short = mask.sum(1) < K
    if bool(short.any()):
        row = int(short.nonzero()[0, 0])
        raise ValueError(f"request {row} has {int(mask[row].sum())} valid candidates, fewer than K={K}")
    auction = gsp(bids, q_hat, mask, K)
    idx = auction.winners
    prices = auction.prices.minimum(bids.gather(1, idx))
    remaining = (q_hat * bids).masked_fill(~mask, float("-inf"))
    chosen = remaining.gather(1, idx)
    log_probs = []
    for k in range(K):
        log_probs.append(chosen[:, k] - remaining.logsumexp(1))
        remaining.scatter_(1, idx[:, k : k + 1], float("-inf"))
    return idx, torch.stack(log_probs, dim=1), prices
