"""Remote feature store (docs/design.md §2, V1 §3.2): user profile + behaviour sequence, once per request.

:class:`RemoteUserStore` is the interface a real key-value service implements; the default
:class:`ParquetUserStore` serves ``users.parquet`` from memory (memory-mapped read, validated by
:mod:`egakit.sim.io`). Sequences are truncated to the most recent ``max_behaviours`` (L) items,
kept oldest first; with ``as_of`` only behaviours strictly before the request time are served, so
a request never sees its own future.

Shapes: U users asked for, F_p = ``len(schema.USER_CATEGORICAL)``,
F_b = ``len(schema.BEHAVIOUR_CATEGORICAL)``, L_max = the longest served sequence (≤ L).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from egakit.features.local_store import IdArray, IdIndex, as_id_array, read_world_table
from egakit.sim import schema
from egakit.sim.io import load_world_meta


@dataclass
class UserFeatures:
    """What one remote call returns for U users."""

    profile: np.ndarray  # (U, F_p) int64, schema.USER_CATEGORICAL order
    bhv_feats: np.ndarray  # (U, L_max, F_b) int64, schema.BEHAVIOUR_CATEGORICAL order, 0 on padding
    bhv_len: np.ndarray  # (U,) int64 valid behaviours of each user (the first bhv_len[u] rows)

    def sequence(self, u: int) -> np.ndarray:
        """(bhv_len[u], F_b) int64 behaviour features of user ``u`` (oldest first)."""
        return self.bhv_feats[u, : int(self.bhv_len[u])]


class RemoteUserStore(ABC):
    """User-side features, fetched once per request (one RPC in production)."""

    @property
    @abstractmethod
    def max_behaviours(self) -> int:
        """L: the longest sequence :meth:`get` serves."""

    @abstractmethod
    def get(self, user_ids: IdArray, as_of: Optional[IdArray] = None) -> UserFeatures:
        """Profiles and the most recent ≤ L behaviours of ``user_ids`` (U,).

        ``as_of`` (U,) int64, in the world's hours (``bhv_ts`` units): serve only behaviours with
        ``bhv_ts < as_of``. Unknown users raise :class:`~egakit.errors.WorldDataError`.
        """


class ParquetUserStore(RemoteUserStore):
    """The default remote store: ``users.parquet`` in memory, vectorised lookups."""

    def __init__(self, world_dir: str | Path, max_behaviours: Optional[int] = None):
        """``max_behaviours``: L; ``None`` takes the world's ``max_behaviours`` from world.json."""
        self.world_dir = Path(world_dir)
        if max_behaviours is None:
            max_behaviours = int(load_world_meta(self.world_dir)["max_behaviours"])
        if max_behaviours < 0:
            raise ValueError(f"max_behaviours must be >= 0, got {max_behaviours}")
        self._max_behaviours = int(max_behaviours)
        columns = ["user_id", *schema.USER_CATEGORICAL, "bhv_ts", *schema.BEHAVIOUR_CATEGORICAL]
        self.path, table = read_world_table(self.world_dir, "users", columns)
        self._index = IdIndex(table.column("user_id").to_numpy(), self.path, "user_id")
        self._profile = np.stack(
            [table.column(name).to_numpy().astype(np.int64) for name in schema.USER_CATEGORICAL], axis=1
        )
        ts = table.column("bhv_ts").combine_chunks()
        self._offsets = ts.offsets.to_numpy().astype(np.int64)  # (U_all + 1,)
        self._ts = ts.values.to_numpy()
        # Every behaviour column shares bhv_ts's offsets (validated by egakit.sim.io); flat values only.
        self._values = [table.column(name).combine_chunks().values.to_numpy() for name in schema.BEHAVIOUR_CATEGORICAL]

    def __getstate__(self) -> dict:
        return {"world_dir": str(self.world_dir), "max_behaviours": self._max_behaviours}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["world_dir"], state["max_behaviours"])

    @property
    def max_behaviours(self) -> int:
        return self._max_behaviours

    def __len__(self) -> int:
        return len(self._index)

    def get(self, user_ids: IdArray, as_of: Optional[IdArray] = None) -> UserFeatures:
        ids = as_id_array(user_ids).reshape(-1)
        rows = self._index.rows(ids)
        start = self._offsets[rows]
        end = self._offsets[rows + 1].copy()
        if as_of is not None:
            cutoff = as_id_array(as_of).reshape(-1)
            if cutoff.shape != ids.shape:
                raise ValueError(f"as_of has shape {cutoff.shape}, user_ids {ids.shape}")
            for u in range(ids.size):  # sequences are time-ordered: one binary search per user
                end[u] = start[u] + np.searchsorted(self._ts[start[u] : end[u]], cutoff[u], side="left")
        start = np.maximum(start, end - self._max_behaviours)
        lengths = end - start
        width = int(lengths.max()) if lengths.size else 0
        feats = np.zeros((ids.size, width, len(self._values)), dtype=np.int64)
        if lengths.sum():
            user = np.repeat(np.arange(ids.size), lengths)
            pos = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            src = start[user] + pos
            for f, values in enumerate(self._values):
                feats[user, pos, f] = values[src]
        return UserFeatures(profile=self._profile[rows], bhv_feats=feats, bhv_len=lengths.astype(np.int64))
