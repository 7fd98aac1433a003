"""Pieces shared by the cascade baselines (V1 §5.1.3): cross-feature vocabularies, masked pooling.

The baselines embed the same observable categorical features as EGA-V1, with
:class:`egakit.model.embedding.FeatureEmbedding` (Eq. 5–6); only the ranking model (DIN) may also
read the explicit cross features (:mod:`egakit.features.cross`).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from torch import Tensor

from egakit.features.cross import CROSS_FEATURES, CrossFeatureSpec

#: The three cascade stages, in pipeline order (V1 §1, Fig. 1).
STAGES = ("recall", "prerank", "rank")


def resolve_cross_vocab_sizes(
    vocab_sizes: Mapping[str, int], cross_vocab_sizes: Optional[Sequence[int]] = None
) -> list[int]:
    """One vocabulary size per ``cross_feats`` column, in :data:`CROSS_FEATURES` order.

    Explicit ``cross_vocab_sizes`` win; else the sizes are read from ``vocab_sizes`` when it has
    the cross keys (``WorldDataModule.vocab_sizes`` with ``cross_features=True``); else they are
    derived from the number of categories with :class:`CrossFeatureSpec`'s default buckets (the
    world.json ``vocab`` the CLI injects has no cross keys, and none of the three sizes depends on
    the grid width).
    """
    if cross_vocab_sizes:
        sizes = [int(v) for v in cross_vocab_sizes]
        if len(sizes) != len(CROSS_FEATURES):
            raise ValueError(f"cross_vocab_sizes needs {len(CROSS_FEATURES)} sizes {CROSS_FEATURES}, got {sizes}")
        return sizes
    if all(name in vocab_sizes for name in CROSS_FEATURES):
        return [int(vocab_sizes[name]) for name in CROSS_FEATURES]
    if "category" not in vocab_sizes:
        raise KeyError("vocab_sizes has no 'category': cannot size the cross-feature vocabularies")
    return CrossFeatureSpec(grid_width=1, num_categories=int(vocab_sizes["category"])).column_vocab_sizes


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, L, d) over the valid rows of ``mask`` (B, L); 0 for an empty row."""
    weight = mask.unsqueeze(-1).to(x.dtype)
    return (x * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return stage


def require_features(batch, *, cross: bool) -> None:
    """Clear errors when the DataModule did not gather the features a baseline reads."""
    if batch.cand_feats is None:
        raise ValueError(
            "RequestBatch.cand_feats is None: the DataModule must gather candidate features "
            "(on_after_batch_transfer / fill_features) before the model runs"
        )
    if cross and batch.cross_feats is None:
        raise ValueError(
            "RequestBatch.cross_feats is None but this model reads explicit cross features: set "
            "data.init_args.cross_features=true, or build the model with use_cross_features=false"
        )


