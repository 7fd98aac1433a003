"""AucFormer's permutation-aware evaluator (V1 §3.4, Eq. 18; docs/design.md §3.3).

    x_k = W [h_{y_k}; t_k; e_u]                                  (B, K, d), t_k = slot embedding
    q_{y_k} = σ(MLP_E(𝒯(x)_k))                                   (Eq. 18)

𝒯 is m_e blocks of Eq. 7, 9, 10 with **full** attention over the K chosen ads (at K = 5 the K × K
attention is cheaper than clustering, docs/design.md §3.3), each followed by the FFN; every sub-layer has a
residual + LayerNorm. The slot embedding makes the prediction depend on the order of the list,
and attention over the list lets each ad's pCTR depend on its neighbours (externalities).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egakit.model.cluster_attention import merge_heads, split_heads
from egakit.model.config import BlockOptions
from egakit.model.dice import Dice
from egakit.model.gcf import FeedForward
from egakit.model.heads import mlp


class ListSelfAttention(nn.Module):
    """Eq. 7 → full-attention Eq. 9 → Eq. 10, residual + LayerNorm, over a short list.

    x (B, K, d) → (B, K, d); every position is valid.
    """

    def __init__(self, d: int, n_heads: int, options: BlockOptions = BlockOptions()) -> None:
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d={d} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        dice = dict(eps=options.dice_eps, momentum=options.dice_momentum)
        self.to_qkv = nn.Linear(d, 3 * d)
        self.qkv_act = Dice(3 * d, **dice)
        self.out = nn.Linear(d, d)
        self.out_act = Dice(d, **dice)
        self.norm = nn.LayerNorm(d, eps=options.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (split_heads(part, self.n_heads) for part in self.qkv_act(self.to_qkv(x)).chunk(3, dim=-1))
        heads = F.scaled_dot_product_attention(q, k, v)
        return self.norm(x + self.out_act(self.out(merge_heads(heads))))


class Evaluator(nn.Module):
    """Permutation-aware pCTR of a K-ad list (Eq. 18).

    Args:
        d, n_heads: block sizes; K: slots; m_e: blocks; hidden: MLP_E hidden sizes.

    forward(h_chosen (B, K, d) = H_ad at the list, e_u (B, d)) → logits (B, K); q = σ(logits).
    """

    def __init__(
        self, d: int, n_heads: int, K: int, m_e: int, hidden: Sequence[int], options: BlockOptions = BlockOptions()
    ) -> None:
        super().__init__()
        self.K = K
        self.slot_embedding = nn.Embedding(K, d)
        self.project = nn.Linear(3 * d, d)
        self.project_norm = nn.LayerNorm(d, eps=options.layer_norm_eps)
        self.attention = nn.ModuleList(ListSelfAttention(d, n_heads, options) for _ in range(m_e))
        self.ffn = nn.ModuleList(FeedForward(d, options) for _ in range(m_e))
        self.head = mlp(d, hidden, 1)

    def forward(self, h_chosen: Tensor, e_u: Tensor) -> Tensor:
        b, k, d = h_chosen.shape
        if k > self.K:
            raise ValueError(f"the evaluator was built for at most K={self.K} slots, got a list of {k}")
        slots = self.slot_embedding.weight[:k].unsqueeze(0).expand(b, k, d)
        x = self.project_norm(self.project(torch.cat([h_chosen, slots, e_u.unsqueeze(1).expand(b, k, d)], dim=-1)))
        for attention, ffn in zip(self.attention, self.ffn):
            x = ffn(attention(x))
        return self.head(x).squeeze(-1)
