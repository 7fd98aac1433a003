"""RecFormer (V1 §3.3, docs/design.md §3.2): two GCF stacks (ads, behaviours) with MIF exchanges.

    H_ad^0 = E_ad (+ broadcast user/context),  H_usr^0 = E_bhv
    for ℓ = 1..m:  H_ad^ℓ = GCF_ad(H_ad^{ℓ−1}),  H_usr^ℓ = GCF_usr(H_usr^{ℓ−1})
                   if ℓ ∈ {m_c, 2·m_c, …, m}: (H_ad^ℓ, H_usr^ℓ) = MIF(H_ad^ℓ, H_usr^ℓ)
    e_u = LayerNorm(W [e_user; mean_valid(H_usr^m)])

Variants (ablations, V1 Tables 2–3)

=============  ==================  ===================  =======================  ===================
variant        ad layers           behaviour layers     exchange every m_c       at the end
=============  ==================  ===================  =======================  ===================
full           GCF                 GCF                  TA + CA                  —
no_gcf (−gcf)  FFN only            GCF                  TA, point-wise           —
no_mif (−mif)  GCF                 none (raw E_bhv)     —                        TA, point-wise (DIN)
ta_only (−CA)  GCF                 GCF                  TA                       —
ca_only (−TA)  GCF                 GCF                  CA                       —
late_fusion    GCF                 GCF                  —                        TA, point-wise
=============  ==================  ===================  =======================  ===================

"Point-wise" TA = cross cluster attention without query gating: each ad attends to behaviour
surrogates that do not depend on the other ads. So ``no_gcf`` is truly point-wise over candidates
(an ad's output does not depend on the other candidates), as the paper's −gcf ("point-wise pCTR
instead of set-aware pCTR") requires. −mif uses DIN (target attention over the raw behaviour
embeddings); late fusion processes the behaviours with their own GCF stack first, then fuses once.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from egakit.model.cluster_attention import zero_padding
from egakit.model.config import VARIANTS, BlockOptions, fusion_layers
from egakit.model.gcf import GCFLayer, PointwiseLayer
from egakit.model.mif import MIF


class RecFormerOutput(NamedTuple):
    """h_ad (B, N, d) = H_ad; h_usr (B, L, d) = H_usr; e_u (B, d) user/context embedding."""

    h_ad: Tensor
    h_usr: Tensor
    e_u: Tensor


class VariantLayout(NamedTuple):
    """Which blocks a RecFormer variant has (the one table: ``egakit.flops.model`` counts from it)."""

    ads_gcf: bool  # ads use GCF layers (else point-wise FFN layers)
    behaviour_stack: bool  # behaviours have their own GCF stack
    interleaved_target: bool  # MIF target attention between the stacks
    interleaved_context: bool  # MIF context attention between the stacks
    point_wise_target: bool  # the interleaved target attention is point-wise
    final_target: bool  # a final point-wise target attention after the stacks


#: variant → its blocks (see :class:`VariantLayout`).
VARIANT_LAYOUT = {
    "full": VariantLayout(True, True, True, True, False, False),
    "no_gcf": VariantLayout(False, True, True, False, True, False),
    "no_mif": VariantLayout(True, False, False, False, False, True),
    "ta_only": VariantLayout(True, True, True, False, False, False),
    "ca_only": VariantLayout(True, True, False, True, False, False),
    "late_fusion": VariantLayout(True, True, False, False, False, True),
}
assert set(VARIANT_LAYOUT) == set(VARIANTS)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x (B, L, d) over the rows where mask (B, L) is True → (B, d); zeros if none."""
    weight = mask.unsqueeze(-1).to(x.dtype)
    return (x * weight).sum(1) / weight.sum(1).clamp_min(1.0)


class RecFormer(nn.Module):
    """RecFormer: GCF stacks for ads and behaviours with MIF exchanges (Eq. 7–15).

    Args:
        d, n_heads, n_clusters: block sizes (N_h, N_c).
        m: layers per stream; m_c: MIF interval (exchanges after layers {m_c, 2m_c, …, m}).
        variant: one of ``egakit.model.config.VARIANTS`` (table in the module docstring).
        broadcast_user_to_ads: add W_u·e_user to every ad token before the first layer.
        options: numerical block options.
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        n_clusters: int,
        m: int,
        m_c: int,
        variant: str = "full",
        *,
        broadcast_user_to_ads: bool = True,
        options: BlockOptions = BlockOptions(),
    ) -> None:
        super().__init__()
        if variant not in VARIANT_LAYOUT:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        ads_gcf, bhv_stack, target, context, point_wise_target, final_target = VARIANT_LAYOUT[variant]
        self.variant = variant
        self.fusion_layers = fusion_layers(m, m_c) if (target or context) else ()
        self.ad_layers = nn.ModuleList(
            GCFLayer(d, n_heads, n_clusters, options) if ads_gcf else PointwiseLayer(d, options) for _ in range(m)
        )
        self.bhv_layers = nn.ModuleList(GCFLayer(d, n_heads, n_clusters, options) for _ in range(m if bhv_stack else 0))
        self.fusions = nn.ModuleDict(
            {
                str(layer): MIF(
                    d, n_heads, n_clusters, target=target, context=context,
                    point_wise_target=point_wise_target, options=options,
                )
                for layer in self.fusion_layers
            }
        )
        self.final_fusion: Optional[MIF] = (
            MIF(d, n_heads, n_clusters, target=True, context=False, point_wise_target=True, options=options)
            if final_target
            else None
        )
        self.user_to_ads = nn.Linear(d, d) if broadcast_user_to_ads else None
        self.user_summary = nn.Linear(2 * d, d)
        self.user_norm = nn.LayerNorm(d, eps=options.layer_norm_eps)

    def forward(
        self, e_ad: Tensor, ad_mask: Tensor, e_bhv: Tensor, bhv_mask: Tensor, e_user: Tensor
    ) -> RecFormerOutput:
        """e_ad (B, N, d), ad_mask (B, N), e_bhv (B, L, d), bhv_mask (B, L), e_user (B, d)."""
        h_ad = e_ad if self.user_to_ads is None else e_ad + self.user_to_ads(e_user).unsqueeze(1)
        h_ad, h_usr = zero_padding(h_ad, ad_mask), zero_padding(e_bhv, bhv_mask)
        for index, ad_layer in enumerate(self.ad_layers):
            h_ad = ad_layer(h_ad, ad_mask)
            if self.bhv_layers:
                h_usr = self.bhv_layers[index](h_usr, bhv_mask)
            fusion = self.fusions[str(index + 1)] if str(index + 1) in self.fusions else None
            if fusion is not None:
                h_ad, h_usr = fusion(h_ad, ad_mask, h_usr, bhv_mask)
        if self.final_fusion is not None:
            h_ad, h_usr = self.final_fusion(h_ad, ad_mask, h_usr, bhv_mask)
        e_u = self.user_norm(self.user_summary(torch.cat([e_user, masked_mean(h_usr, bhv_mask)], dim=-1)))
        return RecFormerOutput(h_ad=h_ad, h_usr=h_usr, e_u=e_u)
