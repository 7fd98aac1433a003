"""Critical-bid (Myerson) payments for the generator's allocation — the IC payment rule.

Why not Eq. 19 alone. Eq. 19 prices a winner at p = p̃ · b with p̃ = σ(MLP_pay(h, q, b_−i)): the
rate never reads the ad's own bid, so the price scales with the bid and an advertiser who shades
its bid pays proportionally less for (almost) the same slot. The Lagrangian of Eq. 24 fights that
with a regret penalty but cannot remove it: on the small world the trained network leaves
Ψ ≈ 40 % (oracle), worse than GSP. For a *monotone* allocation (Eq. 17: a higher own bid never
lowers an ad's score in any slot) Myerson's lemma gives the one payment that makes truthful
bidding optimal; this module computes it exactly.

The allocation of ad i as a function of its own bid β. Slot k goes to the best remaining
s[n, k] = h_n · T_k + c · q̂_n · b_n (c = e^{w_z}). If i loses slots 1..k−1 they go to the same
ads as in the greedy run **without i** (Y_−i, the list RLAF's Eq. 22 already re-runs), so i wins
slot k exactly when its score beats M_k, the k-th winning score of Y_−i:

    θ_k = (M_k − h_i · T_k) / (c · q̂_i)          bid at which i ties the winner of slot k in Y_−i
    position(β) = min{k : β > θ_k}               (non-increasing in β: monotone)
    θ*_k = max(0, min_{l ≤ k} θ_l)                the smallest bid that reaches slot k or better

With position effects x_1 ≥ … ≥ x_K (expected clicks per unit CTR in each slot; x_{K+1} = 0) the
Myerson payment of the ad in slot j, per click, is

    p_j = Σ_{l=j}^{K} (x_l − x_{l+1}) / x_j · θ*_l          (≤ θ*_j ≤ b_i: individually rational)

— the VCG price of a position auction, with the generator's learned, set-aware scores in place
of q̂·b. Truthful bidding is a dominant strategy whenever clicks factor as q̂_i · x_k; the truth of
the world adds list externalities, so the measured Ψ is small but not zero (as for VCG on the
true CTR). The position effects x come from pre-training's learned observation rates of the
exposure slots (:class:`~egakit.model.heads.ObservationRates`), i.e. from the logs.

Cost: one dense (B, N, K) score tensor (memory linear in N) and K greedy passes over N for each
of the K winners — O(K² · N), next to RecFormer's O(N · N_c · d) per layer.
"""
from __future__ import annotations

import torch
from torch import Tensor


def winner_thresholds(scores: Tensor, mask: Tensor, idx: Tensor, own_free: Tensor, own_slope: Tensor) -> Tensor:
    """θ*_{j,l} (B, K, K): for winner j (row), the smallest own bid that wins slot l or better.

    scores: (B, N, K) s[n, k] at the reported bids (the competitors' side, M_k); mask: (B, N)
    bool candidates that may win; idx: (B, K) winners (candidate positions, slot order);
    own_free: (B, K, K) h_i · T_k, each winner's bid-free score in every slot (passed apart
    rather than recovered as s − c·q̂·b, which loses float32 digits when the bid term dominates);
    own_slope: (B, K) c · q̂ of each winner (> 0). A slot no competitor can fill (fewer than
    K + 1 candidates) has θ = 0.
    """
    B, N, K = scores.shape
    neg_inf = torch.finfo(scores.dtype).min
    valid = mask.unsqueeze(1).expand(B, K, N).clone()  # (B, winner, N): Y_−i candidates
    valid.scatter_(2, idx.unsqueeze(-1), False)
    theta = []
    for k in range(K):
        col = scores[:, :, k].unsqueeze(1).expand(B, K, N).masked_fill(~valid, neg_inf)
        best, pick = col.max(dim=2)  # (B, winner): M_k of Y_−i and its ad
        has = valid.any(dim=2)
        theta.append(torch.where(has, (best - own_free[:, :, k]) / own_slope, torch.zeros_like(best)))
        valid.scatter_(2, pick.unsqueeze(-1), False)
    theta = torch.stack(theta, dim=2)  # (B, winner, slot)
    return theta.cummin(dim=2).values.clamp_min(0.0)


def myerson_prices(thresholds: Tensor, position_ctr: Tensor, bids: Tensor) -> Tensor:
    """Per-click prices (B, K) of the winners in slot order.

    thresholds: (B, K, K) θ* of :func:`winner_thresholds`; position_ctr: (K,) positive,
    non-increasing x_k; bids: (B, K) the winners' bids (the result is clamped to [0, b]).
    """
    K = position_ctr.shape[0]
    x = position_ctr.to(thresholds.dtype)
    drop = x - torch.cat([x[1:], x.new_zeros(1)])  # x_l − x_{l+1}, (K,)
    weight = torch.triu(drop.expand(K, K)) / x.unsqueeze(1)  # (slot j, l): (x_l − x_{l+1}) / x_j, l ≥ j
    prices = (thresholds * weight.unsqueeze(0)).sum(-1)  # winner j sits in slot j
    return prices.clamp_min(0.0).minimum(bids)
