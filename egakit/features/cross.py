"""Explicit cross features (baselines and the "with CF" ablations; off by default in EGA).

EGA-V1 omits explicit cross features and lets the network recover them (V1 §3.2); the cascade
baselines and the ablations use them. All three are computed per candidate from observable data
already in a :class:`~egakit.batch.RequestBatch` (never from the world's hidden truth), on the
batch's device, after transfer:

- ``x_distance``: bucket of the Euclidean distance, in grid cells, between the request's cell and
  the ad's cell (grid coordinates ``(cell // grid_width, cell % grid_width)``).
- ``x_hour_category``: ``hour * num_categories + category``.
- ``x_category_count``: bucket of how many of the user's (served) behaviours are in the ad's
  category.

Shapes: B requests, N candidates, L behaviours, F_x = 3 (``CROSS_FEATURES`` order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from egakit.sim import schema

CROSS_FEATURES = ("x_distance", "x_hour_category", "x_category_count")

_AD_CATEGORY = schema.AD_CATEGORICAL.index("category")
_AD_CELL = schema.AD_CATEGORICAL.index("geo_cell")
_REQ_HOUR = len(schema.USER_CATEGORICAL) + schema.CONTEXT_CATEGORICAL.index("hour")
_REQ_CELL = len(schema.USER_CATEGORICAL) + schema.CONTEXT_CATEGORICAL.index("geo_cell")
_BHV_CATEGORY = schema.BEHAVIOUR_CATEGORICAL.index("bhv_category")


@dataclass(frozen=True)
class CrossFeatureSpec:
    """How the explicit cross features are bucketed.

    ``distance_edges``: upper edges (in cells) of the distance buckets; bucket i holds
    ``edges[i-1] < d <= edges[i]``, the last bucket everything beyond. The default separates the
    same cell (0), the 8 neighbours (1, √2), then rings of doubling radius.
    ``count_edges``: the same for the behaviour count: 0, 1, 2–3, 4–7, 8–15, ≥ 16.
    """

    grid_width: int
    num_categories: int
    distance_edges: tuple[float, ...] = (0.0, 1.5, 3.0, 6.0, 12.0, 24.0)
    count_edges: tuple[int, ...] = (0, 1, 3, 7, 15)

    def __post_init__(self) -> None:
        if self.grid_width < 1 or self.num_categories < 1:
            raise ValueError(f"grid_width and num_categories must be >= 1, got {self.grid_width}, {self.num_categories}")
        for name in ("distance_edges", "count_edges"):
            edges = getattr(self, name)
            if list(edges) != sorted(set(edges)):
                raise ValueError(f"{name} must be strictly increasing, got {edges}")

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Embedding-table size of each cross feature (``CROSS_FEATURES`` keys)."""
        return {
            "x_distance": len(self.distance_edges) + 1,
            "x_hour_category": schema.HOURS_PER_DAY * self.num_categories,
            "x_category_count": len(self.count_edges) + 1,
        }

    @property
    def column_vocab_sizes(self) -> list[int]:
        """The same sizes as a list in ``CROSS_FEATURES`` (``cross_feats`` column) order."""
        sizes = self.vocab_sizes
        return [sizes[name] for name in CROSS_FEATURES]

    @classmethod
    def for_world(cls, meta: Mapping[str, Any]) -> "CrossFeatureSpec":
        """The spec of a world, from its world.json ``meta`` (city grid width, category count)."""
        return cls(grid_width=int(meta["city"]["grid"]), num_categories=int(meta["vocab"]["category"]))


def cell_distance(cell_a: Tensor, cell_b: Tensor, grid_width: int) -> Tensor:
    """Euclidean distance in grid cells between row-major cell indices (broadcasting), float32."""
    ra, ca = torch.div(cell_a, grid_width, rounding_mode="floor"), cell_a % grid_width
    rb, cb = torch.div(cell_b, grid_width, rounding_mode="floor"), cell_b % grid_width
    return torch.hypot((ra - rb).float(), (ca - cb).float())


def cross_features(
    spec: CrossFeatureSpec,
    cand_feats: Tensor,
    cand_mask: Tensor,
    user_feats: Tensor,
    bhv_feats: Tensor,
    bhv_mask: Tensor,
) -> Tensor:
    """(B, N, F_x) int64 explicit cross features, 0 on padded candidates.

    cand_feats (B, N, F_a) int64; cand_mask (B, N) bool; user_feats (B, F_u) int64 (user profile
    then context, as in RequestBatch); bhv_feats (B, L, F_b) int64; bhv_mask (B, L) bool.
    """
    category = cand_feats[..., _AD_CATEGORY]  # (B, N)
    hour = user_feats[:, _REQ_HOUR].unsqueeze(1)  # (B, 1)
    req_cell = user_feats[:, _REQ_CELL].unsqueeze(1)

    dist = cell_distance(req_cell, cand_feats[..., _AD_CELL], spec.grid_width)
    dist_edges = torch.tensor(spec.distance_edges, dtype=dist.dtype, device=dist.device)
    x_distance = torch.bucketize(dist, dist_edges)

    x_hour_category = hour * spec.num_categories + category

    counts = torch.zeros(bhv_feats.shape[0], spec.num_categories, dtype=torch.int64, device=bhv_feats.device)
    if bhv_feats.shape[1]:
        counts.scatter_add_(1, bhv_feats[..., _BHV_CATEGORY], bhv_mask.long())
    in_category = counts.gather(1, category)
    count_edges = torch.tensor(spec.count_edges, dtype=torch.int64, device=counts.device)
    x_category_count = torch.bucketize(in_category, count_edges)

    out = torch.stack([x_distance, x_hour_category, x_category_count], dim=-1)
    return out * cand_mask.unsqueeze(-1)
