"""Cluster attention (V1 Eq. 7–14, docs/design.md §3.1): attention of N queries to N_c surrogate tokens.

Per head h (d_h = d / N_h), with learnable centroids C ∈ R^{N_h × N_c × d_h}:

    Q, K, V = Split(φ(f_1(H)))                                   (Eq. 7, f_1: d → 3d, φ = Dice)
    P  = softmax over the valid keys n of (K Cᵀ / √d_h)           (N × N_c, columns sum to 1)
    A_q = Pᵀ Q,  A_k = Pᵀ K,  A_v = Pᵀ V                         (Eq. 11, ``egakit.kernels.cluster_aggregate``)
    φ_k = σ(f_k1(A_q A_kᵀ / √d_h)),  φ_v = σ(f_v1(A_q A_kᵀ / √d_h))    (Eq. 12, f_·1 = Linear(N_c → 1))
    K' = φ_k ⊙ f_k2(A_q) + (1 − φ_k) ⊙ f_k2(A_k)                  (Eq. 13)
    V' = φ_v ⊙ f_v2(A_q) + (1 − φ_v) ⊙ f_v2(A_v)                  (Eq. 14)
    O  = softmax(Q K'ᵀ / √d_h) V'                                 (Eq. 9, SDPA over the N_c surrogates)
    H_attn = φ(f_2(Concat(heads)));  out = LayerNorm(H + H_attn)   (Eq. 10 + residual)

Choices where the paper is loose (all documented in docs/design.md §3.1 or here):
- f_1 is stored as two Linears, d → d (Q) and d → 2d (K|V). In self-attention this is exactly
  Split(φ(f_1(H))) (Dice's statistics are per feature); in cross attention it lets Q come from
  one sequence and K, V from another without computing unused thirds.
- f_k2, f_v2 are **per-head** Linear(d_h → d_h): each head has its own centroids, so cluster c of
  head 1 and cluster c of head 2 are unrelated and mixing heads per cluster would be meaningless.
- The gate input A_q A_kᵀ is scaled by 1/√d_h (a re-parametrisation of f_·1 that keeps the
  sigmoid out of saturation at initialisation).
- Cross attention (MIF, AucFormer): K, V and P come from the key sequence. Pᵀ Q is undefined
  there (Q has another length), so the query surrogates use the query sequence's own soft
  assignment to the same centroids: A_q = P_qᵀ Q with P_q = softmax over valid queries of
  (Q Cᵀ / √d_h) — i.e. ``cluster_aggregate(q, q, q, C, mask_q)``.
- ``query_gating=False`` drops the A_q terms (φ ≡ 0: K' = f_k2(A_k), V' = f_v2(A_v)). Each query
  then attends to key surrogates that do not depend on the other queries: the "DIN-style"
  point-wise target attention of the −gcf / −mif / late-fusion ablations.

Padding keys take no part in P (the kernel masks them); padding queries are computed and then
zeroed, and Dice ignores them, so valid rows are invariant to extra padding and to the order of
candidates. Memory is linear in N: the kernel never builds N × N_c in full, and Eq. 9 runs over
query chunks of ``options.query_chunk`` rows.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import egakit.kernels
from egakit.model.config import BlockOptions
from egakit.model.dice import Dice


def all_valid(x: Tensor) -> Tensor:
    """A (B, N) all-True mask for x (B, N, d)."""
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """x (B, N, d) with the rows where mask (B, N) is False set to 0."""
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, N, d) → (B, H, N, d_h)."""
    b, n, d = x.shape
    return x.view(b, n, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, N, d_h) → (B, N, d)."""
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, chunk: int) -> Tensor:
    """softmax(q kᵀ / √d_h) v over ``chunk`` queries at a time (Eq. 9); no mask (all keys valid).

    q: (B, H, N, d_h); k, v: (B, H, N_c, d_h) → (B, H, N, d_h).
    """
    if q.shape[2] <= chunk:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(part, k, v) for part in q.split(chunk, dim=2)], dim=2)


class HeadwiseLinear(nn.Module):
    """A separate Linear(d_h → d_h) per head: (B, H, M, d_h) → (B, H, M, d_h) (f_k2, f_v2)."""

    def __init__(self, n_heads: int, d_head: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_head)
        self.weight = nn.Parameter(torch.empty(n_heads, d_head, d_head).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_heads, d_head).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bhmi,hio->bhmo", x, self.weight) + self.bias.unsqueeze(1)


class ClusterAttention(nn.Module):
    """Cluster-attention sub-layer with residual + LayerNorm (Eq. 7–14), self or cross.

    Args:
        d: model width; n_heads: N_h; n_clusters: N_c.
        query_gating: keep the A_q terms of Eq. 12–14 (False = point-wise target attention).
        options: numerical options (Dice, LayerNorm, Eq. 9 chunk, kernel backend).

    ``forward(x_q, mask_q, x_kv=None, mask_kv=None)``: x_q (B, N_q, d), mask_q (B, N_q) bool or None
    (all valid); self-attention when x_kv is None, else keys/values from x_kv (B, N_kv, d) with
    mask_kv (B, N_kv). Returns (B, N_q, d), zero on padding queries.
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        n_clusters: int,
        *,
        query_gating: bool = True,
        options: BlockOptions = BlockOptions(),
    ) -> None:
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d={d} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d // n_heads
        self.n_clusters = n_clusters
        self.query_gating = query_gating
        self.options = options
        dice = dict(eps=options.dice_eps, momentum=options.dice_momentum)
        # Eq. 7: f_1 (d → 3d) + φ, stored as the Q part and the K|V part.
        self.to_q = nn.Linear(d, d)
        self.to_kv = nn.Linear(d, 2 * d)
        self.q_act = Dice(d, **dice)
        self.kv_act = Dice(2 * d, **dice)
        # Eq. 11: learnable centroids C (docs/design.md §3.1's resolution of the paper's S).
        self.centroids = nn.Parameter(torch.randn(n_heads, n_clusters, self.d_head))
        # Eq. 12: f_k1, f_v1 = Linear(N_c → 1) row-wise on A_q A_kᵀ.
        self.gate_k = nn.Linear(n_clusters, 1) if query_gating else None
        self.gate_v = nn.Linear(n_clusters, 1) if query_gating else None
        # Eq. 13–14: f_k2, f_v2.
        self.key_proj = HeadwiseLinear(n_heads, self.d_head)
        self.value_proj = HeadwiseLinear(n_heads, self.d_head)
        # Eq. 10: f_2 + φ, then residual + LayerNorm.
        self.out = nn.Linear(d, d)
        self.out_act = Dice(d, **dice)
        self.norm = nn.LayerNorm(d, eps=options.layer_norm_eps)

    def forward(
        self,
        x_q: Tensor,
        mask_q: Optional[Tensor] = None,
        x_kv: Optional[Tensor] = None,
        mask_kv: Optional[Tensor] = None,
    ) -> Tensor:
        if mask_q is None:
            mask_q = all_valid(x_q)
        is_self = x_kv is None
        if is_self:
            x_kv, mask_kv = x_q, mask_q
        elif mask_kv is None:
            mask_kv = all_valid(x_kv)

        q = split_heads(self.q_act(self.to_q(x_q), mask_q), self.n_heads)  # (B, H, N_q, d_h)
        k, v = self.kv_act(self.to_kv(x_kv), mask_kv).chunk(2, dim=-1)
        k, v = split_heads(k, self.n_heads), split_heads(v, self.n_heads)  # (B, H, N_kv, d_h)

        keys, values = self.surrogates(q, k, v, mask_q, mask_kv, is_self)  # (B, H, N_c, d_h)
        heads = chunked_attention(q, keys, values, self.options.query_chunk)  # Eq. 9
        attn = self.out_act(self.out(merge_heads(heads)), mask_q)  # Eq. 10
        return zero_padding(self.norm(x_q + attn), mask_q)

    def surrogates(
        self, q: Tensor, k: Tensor, v: Tensor, mask_q: Tensor, mask_kv: Tensor, is_self: bool
    ) -> tuple[Tensor, Tensor]:
        """K', V' (B, H, N_c, d_h) from Eq. 11–14."""
        backend = self.options.kernel_backend
        if is_self:
            a_q, a_k, a_v = egakit.kernels.cluster_aggregate(q, k, v, self.centroids, mask_kv, backend=backend)
        else:
            _, a_k, a_v = egakit.kernels.cluster_aggregate(k, k, v, self.centroids, mask_kv, backend=backend)
            a_q = None
            if self.query_gating:
                a_q = egakit.kernels.cluster_aggregate(q, q, q, self.centroids, mask_q, backend=backend)[0]
        keys_from_k, values_from_v = self.key_proj(a_k), self.value_proj(a_v)
        if not self.query_gating:
            return keys_from_k, values_from_v
        affinity = a_q @ a_k.transpose(-1, -2) / math.sqrt(self.d_head)  # (B, H, N_c, N_c)
        phi_k = torch.sigmoid(self.gate_k(affinity))  # (B, H, N_c, 1)
        phi_v = torch.sigmoid(self.gate_v(affinity))
        keys = phi_k * self.key_proj(a_q) + (1 - phi_k) * keys_from_k  # Eq. 13
        values = phi_v * self.value_proj(a_q) + (1 - phi_v) * values_from_v  # Eq. 14
        return keys, values
