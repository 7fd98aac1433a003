"""Mid-fusion Interest-Former (V1 §3.3, docs/design.md §3.2): one exchange between the two GCF streams.

- target attention (TA): the ads query the behaviours — cross cluster attention, Q from H_ad,
  K, V (and P) from H_usr;
- context attention (CA): the behaviours query the ads — Q from H_usr, K, V, P from H_ad.

Both read the *pre-exchange* states, so the exchange is symmetric (neither direction sees the
other's update of the same round). RecFormer places one exchange after each of the layers
{m_c, 2·m_c, …, m} (``egakit.model.config.fusion_layers``), m_k = ⌈m / m_c⌉ in all.

``point_wise_target=True`` makes TA point-wise in the ads (no A_q gating, see
``ClusterAttention(query_gating=False)``): the DIN-style target attention of the ablations.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from egakit.model.cluster_attention import ClusterAttention
from egakit.model.config import BlockOptions


class MIF(nn.Module):
    """One MIF exchange.

    Args:
        d, n_heads, n_clusters: block sizes.
        target: run target attention (ads ← behaviours).
        context: run context attention (behaviours ← ads).
        point_wise_target: TA without query gating (each ad independent of the other ads).

    ``forward(h_ad (B, N, d), ad_mask (B, N), h_usr (B, L, d), bhv_mask (B, L))``
    → (h_ad (B, N, d), h_usr (B, L, d)); a stream without its attention passes through unchanged.
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        n_clusters: int,
        *,
        target: bool = True,
        context: bool = True,
        point_wise_target: bool = False,
        options: BlockOptions = BlockOptions(),
    ) -> None:
        super().__init__()
        if not (target or context):
            raise ValueError("an MIF exchange needs target attention, context attention or both")
        self.target: Optional[ClusterAttention] = (
            ClusterAttention(d, n_heads, n_clusters, query_gating=not point_wise_target, options=options)
            if target
            else None
        )
        self.context: Optional[ClusterAttention] = (
            ClusterAttention(d, n_heads, n_clusters, options=options) if context else None
        )

    def forward(self, h_ad: Tensor, ad_mask: Tensor, h_usr: Tensor, bhv_mask: Tensor) -> tuple[Tensor, Tensor]:
        new_ad = self.target(h_ad, ad_mask, h_usr, bhv_mask) if self.target is not None else h_ad
        new_usr = self.context(h_usr, bhv_mask, h_ad, ad_mask) if self.context is not None else h_usr
        return new_ad, new_usr
