"""Global Cluster-Former layer (V1 §3.3, Eq. 7–15): cluster attention + FFN, each sub-layer with
residual + LayerNorm. One stack runs over the candidate ads, one over the behaviours.

The paper's f_out (Eq. 15) is "a feedforward network"; we use the Transformer FFN d → 4d → d
(docs/design.md §3.2) with GELU (the paper names Dice only for Eq. 7 and Eq. 10).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from egakit.model.cluster_attention import ClusterAttention, all_valid, zero_padding
from egakit.model.config import BlockOptions


class FeedForward(nn.Module):
    """f_out of Eq. 15 with residual + LayerNorm: x (B, N, d), mask (B, N) → (B, N, d), zero on padding."""

    def __init__(self, d: int, options: BlockOptions = BlockOptions()) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, options.ffn_mult * d), nn.GELU(), nn.Linear(options.ffn_mult * d, d))
        self.norm = nn.LayerNorm(d, eps=options.layer_norm_eps)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        out = self.norm(x + self.net(x))
        return out if mask is None else zero_padding(out, mask)


class GCFLayer(nn.Module):
    """One GCF layer H^{ℓ+1} = f_out(ClusterAttention(H^ℓ)) (Eq. 7–15).

    x (B, N, d), mask (B, N) bool → (B, N, d).
    """

    def __init__(self, d: int, n_heads: int, n_clusters: int, options: BlockOptions = BlockOptions()) -> None:
        super().__init__()
        self.attention = ClusterAttention(d, n_heads, n_clusters, options=options)
        self.ffn = FeedForward(d, options)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        mask = all_valid(x) if mask is None else mask
        return self.ffn(self.attention(x, mask), mask)


class PointwiseLayer(nn.Module):
    """FFN-only layer: the −gcf ablation (no attention across candidates; each row on its own).

    x (B, N, d), mask (B, N) → (B, N, d).
    """

    def __init__(self, d: int, options: BlockOptions = BlockOptions()) -> None:
        super().__init__()
        self.ffn = FeedForward(d, options)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        return self.ffn(x, mask)


class CrossBlock(nn.Module):
    """Cross cluster attention (queries from x_q, keys/values from x_kv) + FFN.

    Used by AucFormer's generator (slot tokens over H_ad, Eq. 17).
    x_q (B, M, d), mask_q (B, M) or None, x_kv (B, N, d), mask_kv (B, N) → (B, M, d).
    """

    def __init__(self, d: int, n_heads: int, n_clusters: int, options: BlockOptions = BlockOptions()) -> None:
        super().__init__()
        self.attention = ClusterAttention(d, n_heads, n_clusters, options=options)
        self.ffn = FeedForward(d, options)

    def forward(self, x_q: Tensor, mask_q: Optional[Tensor], x_kv: Tensor, mask_kv: Tensor) -> Tensor:
        return self.ffn(self.attention(x_q, mask_q, x_kv, mask_kv), mask_q)
