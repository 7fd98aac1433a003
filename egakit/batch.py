"""The request batch: the one structure that DataModules produce and models consume.

A batch carries ids and small per-request context. Dense candidate features are *not* built in
DataLoader workers (a 10^5-candidate request must never cross a process boundary as dense
features, docs/design.md §2): the DataModule gathers them from its in-memory local ad store after the batch
reaches the device (``LightningDataModule.on_after_batch_transfer``), filling ``cand_feats`` and,
when enabled, ``cross_feats``.

Shapes: B requests, N candidates (padded; ``cand_mask`` marks real ones), K slots, L behaviours.
Feature columns follow :mod:`egakit.sim.schema`: ``user_feats`` = USER_CATEGORICAL +
CONTEXT_CATEGORICAL, ``bhv_feats`` = BEHAVIOUR_CATEGORICAL, ``cand_feats`` = AD_CATEGORICAL.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
from torch import Tensor


@dataclass
class RequestBatch:
    request_id: Tensor  # (B,) int64
    user_id: Tensor  # (B,) int64
    candidate_set_id: Tensor  # (B,) int64
    loc: Tensor  # (B, 2) float32 request location (for the oracle; models use geo_cell)
    user_feats: Tensor  # (B, F_u) int64: age_bucket, gender, home_cell, hour, geo_cell
    bhv_feats: Tensor  # (B, L, F_b) int64, zero on padding
    bhv_mask: Tensor  # (B, L) bool
    cand_ids: Tensor  # (B, N) int64 ad_id, -1 on padding
    cand_rows: Tensor  # (B, N) int64 row of the ad in the local store, 0 on padding
    cand_mask: Tensor  # (B, N) bool
    bids: Tensor  # (B, N) float32, 0 on padding
    labels: Tensor  # (B, N) float32 click label (exposed click or platform label), 0 elsewhere
    label_mask: Tensor  # (B, N) bool: the candidate carries a label
    exposed_slot: Tensor  # (B, N) int64: slot 0..K-1 of an exposed candidate, -1 otherwise
    exposed_index: Tensor  # (B, K) int64: candidate-axis position of the ad in slot k
    exposed_clicks: Tensor  # (B, K) float32
    cand_feats: Optional[Tensor] = None  # (B, N, F_a) int64, filled after transfer
    cross_feats: Optional[Tensor] = None  # (B, N, F_x) int64 explicit cross features (optional)
    # (B,) bool: a repeated request that only evens out shard sizes in evaluation (no labels);
    # metrics must skip it so that 1 and 2 processes give the same numbers. None = no padding.
    is_pad: Optional[Tensor] = None

    def real_requests(self) -> Tensor:
        """(B,) bool: the requests that count in metrics (not shard padding)."""
        if self.is_pad is None:
            return torch.ones(self.batch_size, dtype=torch.bool, device=self.cand_ids.device)
        return ~self.is_pad

    @property
    def batch_size(self) -> int:
        return int(self.cand_ids.shape[0])

    @property
    def num_candidates(self) -> int:
        return int(self.cand_ids.shape[1])

    @property
    def num_slots(self) -> int:
        return int(self.exposed_index.shape[1])

    def to(self, device: torch.device | str) -> "RequestBatch":
        """Move every tensor field to ``device``."""
        moved = {
            f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor) else getattr(self, f.name))
            for f in fields(self)
        }
        return RequestBatch(**moved)

    def replace(self, **changes) -> "RequestBatch":
        return replace(self, **changes)
