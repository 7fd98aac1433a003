"""AucFormer's non-autoregressive generator (V1 §3.4, Eq. 17; docs/design.md §3.3).

    T = Blocks_{m_e}(slot tokens + W e_u; H_ad)        (B, K, d)  — cross cluster attention over H_ad
    s[n, k] = e^{w_z} · q̂_n · b_n + h_n · T_k                     (Eq. 17, before the softmax)
    y_k = argmax_{n valid, n ∉ y_<k} s[n, k]                       (greedy masked slot-wise argmax)
    log z_{y_k,k} = s[y_k, k] − logsumexp_{n valid, n ∉ y_<k} s[n, k]

The softmax runs over candidates n for each slot k (the paper's "j = 1..K" is a typo, docs/design.md §3.3).
The bid term is a per-candidate bias, identical for every slot, so the score is exactly
``egakit.kernels.slot_argmax``'s h·tᵀ + bias and a higher own bid raises the ad's score in every slot
(e^{w_z} > 0, and neither H_ad, T nor q̂ reads the bids). Slot tokens also receive the user
embedding e_u, so the slots can depend on who is asking.

Re-running the allocation with some candidates removed (RLAF's Y_−i, Eq. 22) or with other bids
(payment misreports, Eq. 34) reuses H_ad and T: call :meth:`Generator.allocate` with another mask
or other bids — docs/design.md §5 "re-run the masked argmax with y_i masked".
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

import egakit.kernels
from egakit.model.config import BlockOptions
from egakit.model.gcf import CrossBlock


class Generator(nn.Module):
    """Slot tokens → T, and the greedy allocation of Eq. 17.

    Args:
        d, n_heads, n_clusters: block sizes; K: slots; m_e: cross blocks.
        w_z_init: initial w_z (bid weight e^{w_z}).
        options: numerical block options (``kernel_backend`` is passed to ``egakit.kernels.slot_argmax``).
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        n_clusters: int,
        K: int,
        m_e: int,
        *,
        w_z_init: float = 0.0,
        options: BlockOptions = BlockOptions(),
    ) -> None:
        super().__init__()
        self.K = K
        self.options = options
        self.slot_embedding = nn.Parameter(torch.randn(K, d))
        self.user_to_slots = nn.Linear(d, d)
        self.blocks = nn.ModuleList(CrossBlock(d, n_heads, n_clusters, options) for _ in range(m_e))
        self.to_slot = nn.Linear(d, d)
        self.w_z = nn.Parameter(torch.tensor(float(w_z_init)))

    def slot_tokens(self, h_ad: Tensor, ad_mask: Tensor, e_u: Tensor) -> Tensor:
        """T (B, K, d) from H_ad (B, N, d), ad_mask (B, N) and e_u (B, d)."""
        x = self.slot_embedding.unsqueeze(0) + self.user_to_slots(e_u).unsqueeze(1)
        for block in self.blocks:
            x = block(x, None, h_ad, ad_mask)
        return self.to_slot(x)

    def bid_bias(self, q_hat: Tensor, bids: Tensor) -> Tensor:
        """e^{w_z} · q̂ · b (B, N): the per-candidate bid term of Eq. 17."""
        return torch.exp(self.w_z) * q_hat * bids

    @staticmethod
    def bid_free_scores(h_ad: Tensor, t: Tensor) -> Tensor:
        """Dense h_n · T_k (B, N, K): the bid-free part of Eq. 17's scores."""
        return h_ad @ t.transpose(1, 2)

    def scores(self, h_ad: Tensor, t: Tensor, q_hat: Tensor, bids: Tensor, free: Optional[Tensor] = None) -> Tensor:
        """Dense s[n, k] (B, N, K) — O(N·K) memory; for inspection, pricing and tests, not the
        allocation's hot path. ``free`` reuses :meth:`bid_free_scores` when already computed."""
        free = self.bid_free_scores(h_ad, t) if free is None else free
        return free + self.bid_bias(q_hat, bids).unsqueeze(-1)

    def allocate(
        self,
        h_ad: Tensor,
        t: Tensor,
        q_hat: Tensor,
        bids: Tensor,
        mask: Tensor,
        *,
        sample_seed: Optional[int] = None,
    ) -> tuple[Tensor, Tensor]:
        """Greedy masked slot-wise argmax (or seeded Gumbel sampling) of Eq. 17.

        h_ad (B, N, d), t (B, K, d), q_hat (B, N), bids (B, N), mask (B, N) bool (True = may win)
        → idx (B, K) int64 candidate positions, logz (B, K) sequential log-probabilities.
        Raises ValueError when a request has fewer than K allowed candidates.
        """
        return egakit.kernels.slot_argmax(
            h_ad,
            t,
            self.bid_bias(q_hat, bids),
            mask,
            sample_seed=sample_seed,
            backend=self.options.kernel_backend,
        )

    def forward(
        self,
        h_ad: Tensor,
        ad_mask: Tensor,
        e_u: Tensor,
        q_hat: Tensor,
        bids: Tensor,
        *,
        sample_seed: Optional[int] = None,
    ) -> tuple[Tensor, Tensor]:
        """Slot tokens then allocation: → idx (B, K), logz (B, K)."""
        t = self.slot_tokens(h_ad, ad_mask, e_u)
        return self.allocate(h_ad, t, q_hat, bids, ad_mask, sample_seed=sample_seed)
