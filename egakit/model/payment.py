"""Payments: AucFormer's payment network (V1 Eq. 19; SPEC §3.3) and GSP for the −auf ablation.

    z_{y_i} = MLP_pay([h_{y_i}; q_{y_i}; log(1 + b_{−y_i})])
    "rate"     (Eq. 19 as printed):  p̃ = σ(z),              p = p̃ · b_{y_i}
    "critical" (the default):        p̃ = σ(z − log b_{y_i}), p = p̃ · b_{y_i} = b·e^z / (b + e^z)

b_{−y_i} ∈ R^{K−1} is the bids of the other winners in slot order; it enters as log(1 + b)
because bids are log-normal (heavy-tailed) and the MLP should see them on a compressible scale.
p̃ ∈ (0, 1) in both forms, so p ≤ b for every ad: individual rationality (Eq. 4) holds by
construction.

Why "critical" is the default. Nothing in z reads the ad's own bid, so under "rate" the price is
*proportional* to it: an ad that still wins after shading its bid to γ·b pays γ·p, a sure gain of
(1 − γ)·p·q. The Lagrangian of Eq. 24 can only buy that regret back by lowering p̃ everywhere
(revenue), never by pricing at the ad's critical bid, which is what a truthful position auction
charges. "critical" is the same network with one fixed extra input: p is a smooth min(b, e^z),
so e^z plays the critical bid, read from the others' bids and the ad's state; while e^z ≪ b the
price barely moves with the own bid (∂p/∂b = (e^z / (b + e^z))²), and shading only pays where it
would lose the slot. Same parameters, same IR guarantee; only the price's dependence on the own
bid changes. ``payment_form="rate"`` keeps the literal Eq. 19 (an ablation row).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from egakit.model.config import PAYMENT_FORMS
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
        d: width of h_{y_i}; K: slots; hidden: MLP_pay hidden sizes; form: one of PAYMENT_FORMS.

    forward(h_chosen (B, K, d), q_chosen (B, K), bids_chosen (B, K)) → prices (B, K), 0 ≤ p ≤ b.
    """

    def __init__(self, d: int, K: int, hidden: Sequence[int], form: str = "critical") -> None:
        super().__init__()
        if form not in PAYMENT_FORMS:
            raise ValueError(f"PaymentNet form must be one of {PAYMENT_FORMS}, got {form!r}")
        self.K = K
        self.form = form
        self.net = mlp(d + 1 + (K - 1), hidden, 1)

    def rate(self, h_chosen: Tensor, q_chosen: Tensor, bids_chosen: Tensor) -> Tensor:
        """p̃ (B, K) ∈ (0, 1) (module docstring)."""
        other_bids = torch.log1p(other_winners(bids_chosen, self.K))
        features = torch.cat([h_chosen, q_chosen.unsqueeze(-1), other_bids], dim=-1)
        z = self.net(features).squeeze(-1)
        if self.form == "critical":
            z = z - torch.log(bids_chosen.clamp_min(torch.finfo(bids_chosen.dtype).tiny))
        return torch.sigmoid(z)

    def forward(self, h_chosen: Tensor, q_chosen: Tensor, bids_chosen: Tensor) -> Tensor:
        return self.rate(h_chosen, q_chosen, bids_chosen) * bids_chosen


def gsp_allocation(q_hat: Tensor, bids: Tensor, mask: Tensor, K: int) -> tuple[Tensor, Tensor, Tensor]:
    """GSP over the set-aware pCTR (the −auf ablation): rank by q̂·b, pay the next score.

    q_hat, bids (B, N); mask (B, N) bool → idx (B, K), logz (B, K), prices (B, K) per click:
    p_k = q̂_{y_{k+1}} b_{y_{k+1}} / q̂_{y_k} (the K-th pays the best loser's score; 0 if none), ≤ b.
    logz is the generator-style sequential log-probability (softmax of q̂·b over the remaining
    valid candidates). Ties break to the lower index, as in ``kernels.slot_argmax``.
    Raises ValueError when a request has fewer than K valid candidates.
    """
    short = mask.sum(1) < K
    if bool(short.any()):
        row = int(short.nonzero()[0, 0])
        raise ValueError(f"request {row} has {int(mask[row].sum())} valid candidates, fewer than K={K}")
    score = (q_hat * bids).masked_fill(~mask, float("-inf"))
    ranked_scores, ranked = torch.sort(score, dim=1, descending=True, stable=True)
    idx, chosen = ranked[:, :K], ranked_scores[:, :K]
    best_loser = ranked_scores[:, K] if score.shape[1] > K else score.new_full((score.shape[0],), float("-inf"))
    best_loser = torch.where(torch.isfinite(best_loser), best_loser, torch.zeros_like(best_loser))
    next_score = torch.cat([chosen[:, 1:], best_loser.unsqueeze(1)], dim=1)
    q_chosen = q_hat.gather(1, idx)
    prices = (next_score / q_chosen.clamp_min(torch.finfo(score.dtype).tiny)).minimum(bids.gather(1, idx))
    remaining = score.clone()
    log_probs = []
    for k in range(K):
        log_probs.append(chosen[:, k] - remaining.logsumexp(1))
        remaining.scatter_(1, idx[:, k : k + 1], float("-inf"))
    return idx, torch.stack(log_probs, dim=1), prices
