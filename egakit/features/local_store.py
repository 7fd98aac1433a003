"""Local feature store (docs/design.md §2, V1 §3.2 Eq. 5–6): the city's ads, in memory, looked up by id.

The ads table is read once (memory-mapped Parquet read, validated by :mod:`egakit.sim.io`) and
kept as Arrow; lookups are vectorised (sorted ids + ``searchsorted``). Only the preserved
categorical features (``schema.AD_CATEGORICAL``) are served as model features; bids and
popularity are served separately (the auction and the popularity sampler need them, the
embedding layer does not). No numeric or cross features live here (V1 §3.2).

The per-cell candidate sets (``candidate_sets.parquet``) are local, per-city data too and are
served by :class:`CandidateSets` next to the store.

Shapes: A ads in the store, F_a = ``len(schema.AD_CATEGORICAL)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from egakit.errors import WorldDataError
from egakit.sim import schema
from egakit.sim.io import check_file_schema, load_world_meta, validate_batch

IdArray = Union[np.ndarray, Tensor, list, tuple]
AD_IDS_LEAF = "ad_ids.list.element"  # the Parquet leaf column of candidate_sets.ad_ids


def read_world_table(world_dir: Path, name: str, columns: list[str] | None = None) -> tuple[Path, pa.Table]:
    """Memory-mapped read of one world table (``name`` as in ``schema.TABLES``), validated against
    the schema and world.json's vocabularies and bounds by :mod:`egakit.sim.io`."""
    meta = load_world_meta(world_dir)
    path = Path(world_dir) / schema.TABLES[name][0]
    check_file_schema(path, name, columns)
    try:
        table = pq.read_table(path, columns=columns, memory_map=True)
    except (OSError, pa.ArrowException) as err:
        raise WorldDataError(path, None, None, f"corrupt or truncated Parquet: {err}") from err
    validate_batch(table, name, path, 0, columns=columns, meta=meta)
    return path, table


def as_id_array(ids: IdArray) -> np.ndarray:
    """Any id container (numpy, torch, list) → int64 numpy array of the same shape."""
    if isinstance(ids, Tensor):
        return ids.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(ids, dtype=np.int64)


class IdIndex:
    """id → row of one id column: sorted ids + ``searchsorted``, vectorised over any shape."""

    def __init__(self, ids: np.ndarray, path: Path, field: str):
        """``ids``: (R,) the column; duplicates raise WorldDataError naming ``field`` and the row."""
        self.path = path
        self.field = field
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
            self._sorted, self._order = ids, np.arange(ids.size, dtype=np.int64)
            return
        order = np.argsort(ids, kind="stable").astype(np.int64)
        sorted_ids = ids[order]
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if dup.size:
            raise WorldDataError(path, field, int(order[dup[0] + 1]), f"duplicate id {int(sorted_ids[dup[0]])}")
        self._sorted, self._order = sorted_ids, order

    def __len__(self) -> int:
        return int(self._sorted.size)

    def rows(self, ids: np.ndarray, field: str | None = None) -> np.ndarray:
        """Rows of ``ids`` (int64, any shape) → same shape int64.

        Unknown ids raise WorldDataError naming ``field`` (default: this column's name); the
        reported row is the position of the first unknown id within ``ids`` (flattened).
        """
        field = field or self.field
        if self._sorted.size == 0:
            if ids.size:
                raise WorldDataError(self.path, field, 0, f"unknown id {int(ids.flat[0])}: the table is empty")
            return np.zeros(ids.shape, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, ids), self._sorted.size - 1)
        bad = np.asarray(self._sorted[pos] != ids)
        if bad.any():
            first = int(np.flatnonzero(bad.reshape(-1))[0])
            raise WorldDataError(
                self.path, field, first, f"unknown id {int(ids.reshape(-1)[first])} (not in {self.path.name})"
            )
        return np.asarray(self._order[pos])


@dataclass(frozen=True)
class AdTensors:
    """The store as torch tensors on one device (one ``index_select`` gathers a batch)."""

    feats: Tensor  # (A, F_a) int64, columns in schema.AD_CATEGORICAL order
    bids: Tensor  # (A,) float32
    popularity: Tensor  # (A,) float32


class LocalAdStore:
    """The city's ads (``ads.parquet``) held in memory: id → row, categorical features, bids.

    Rows are positions in ``ads.parquet`` (the ``cand_rows`` of :class:`egakit.batch.RequestBatch`).
    Pickles by path (a DataLoader worker started with ``spawn`` re-reads the file; with ``fork``
    the arrays are shared copy-on-write) and never pickles its device tensors.
    """

    def __init__(self, world_dir: str | Path):
        self.world_dir = Path(world_dir)
        self.path, self.table = read_world_table(self.world_dir, "ads")
        self.ids = self.table.column("ad_id").to_numpy().astype(np.int64, copy=False)  # (A,) per row
        self._index = IdIndex(self.ids, self.path, "ad_id")
        self._feats = np.stack(
            [self.table.column(name).to_numpy().astype(np.int64) for name in schema.AD_CATEGORICAL], axis=1
        )  # (A, F_a)
        self._bids = self.table.column("bid").to_numpy().astype(np.float32, copy=False)
        self._popularity = self.table.column("popularity").to_numpy().astype(np.float32, copy=False)
        self._device_cache: dict[str, AdTensors] = {}

    # -- pickling: by path, without device tensors ---------------------------------------------
    def __getstate__(self) -> dict:
        return {"world_dir": str(self.world_dir)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["world_dir"])

    # -- lookups --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def num_features(self) -> int:
        """F_a: the number of preserved categorical features."""
        return len(schema.AD_CATEGORICAL)

    def rows(self, ad_ids: IdArray, field: str = "ad_id") -> np.ndarray | Tensor:
        """Rows of ``ad_ids`` (any shape) → same shape int64; a torch input gives a torch output.

        Unknown ids raise :class:`~egakit.errors.WorldDataError` naming ``field``.
        """
        rows = self._index.rows(as_id_array(ad_ids), field)
        if isinstance(ad_ids, Tensor):
            return torch.from_numpy(rows).to(ad_ids.device)
        return rows

    def features(self, rows: IdArray) -> np.ndarray | Tensor:
        """(..., F_a) int64 categorical features of ``rows`` (schema.AD_CATEGORICAL order)."""
        if isinstance(rows, Tensor):
            return self.gather(rows)
        return self._feats[np.asarray(rows, dtype=np.int64)]

    def bids(self, rows: IdArray) -> np.ndarray:
        """(...) float32 per-click bids of ``rows``."""
        return self._bids[as_id_array(rows)]

    def popularity(self, rows: IdArray) -> np.ndarray:
        """(...) float32 popularity (> 0) of ``rows``, the weight of popularity sampling."""
        return self._popularity[as_id_array(rows)]

    # -- torch view -----------------------------------------------------------------------------
    def as_tensor(self, device: torch.device | str | None = None) -> AdTensors:
        """The store as tensors on ``device`` (cached per device; built once)."""
        device = torch.device(device if device is not None else "cpu")
        key = str(device)
        cached = self._device_cache.get(key)
        if cached is None:
            cached = AdTensors(
                feats=torch.from_numpy(self._feats).to(device),
                bids=torch.from_numpy(self._bids.copy()).to(device),
                popularity=torch.from_numpy(self._popularity.copy()).to(device),
            )
            self._device_cache[key] = cached
        return cached

    def gather(self, rows: Tensor) -> Tensor:
        """(..., F_a) int64 features of ``rows`` (a tensor of any shape) on ``rows.device``."""
        feats = self.as_tensor(rows.device).feats
        flat = feats.index_select(0, rows.reshape(-1).long())
        return flat.reshape(*rows.shape, feats.shape[1])


class CandidateSets:
    """Per-cell candidate sets (``candidate_sets.parquet``): ``candidate_set_id`` → ad ids / rows.

    Read one row group at a time (each validated), the ad ids are turned into store rows once, at
    load (an unknown ad id is a WorldDataError naming the set's row), and kept as one flat int32
    array plus offsets: 4 bytes per candidate, the least a city of 10^5-candidate sets can hold.
    """

    def __init__(self, world_dir: str | Path, store: LocalAdStore):
        self.world_dir = Path(world_dir)
        self.store = store
        self.path = self.world_dir / schema.TABLES["candidate_sets"][0]
        meta = load_world_meta(self.world_dir)
        columns = ["candidate_set_id", "ad_ids"]
        pf = check_file_schema(self.path, "candidate_sets", columns)
        row_dtype = np.int32 if len(store) < np.iinfo(np.int32).max else np.int64
        md = pf.metadata
        leaf = [md.schema.column(j).path for j in range(md.num_columns)].index(AD_IDS_LEAF)
        capacity = sum(md.row_group(rg).column(leaf).num_values for rg in range(md.num_row_groups))
        self._rows = np.empty(capacity, row_dtype)  # flat rows, set after set (filled in place: no 2x peak)
        set_ids, lengths = [], []
        offset = filled = 0
        for rg in range(pf.num_row_groups):
            try:
                table = pf.read_row_group(rg, columns=columns)
            except (OSError, pa.ArrowException) as err:
                raise WorldDataError(self.path, None, None, f"corrupt or truncated Parquet: {err}") from err
            validate_batch(table, "candidate_sets", self.path, offset, columns=columns, meta=meta)
            lists = table.column("ad_ids").combine_chunks()
            list_offsets = lists.offsets.to_numpy()
            values = lists.values.to_numpy()
            try:
                rows = store.rows(values, field="ad_ids")
            except WorldDataError as err:  # name the set's row, not the position in the flat lookup
                set_row = offset + int(np.searchsorted(list_offsets, err.row, side="right")) - 1
                raise WorldDataError(self.path, "ad_ids", set_row, err.reason) from None
            self._rows[filled : filled + rows.size] = rows
            filled += rows.size
            set_ids.append(table.column("candidate_set_id").to_numpy().astype(np.int64))
            lengths.append(np.diff(list_offsets).astype(np.int64))
            offset += table.num_rows
        if filled != capacity:
            raise WorldDataError(self.path, "ad_ids", None, f"metadata counts {capacity} ids, the data holds {filled}")
        self.set_ids = np.concatenate(set_ids) if set_ids else np.zeros(0, np.int64)  # (S,)
        self._index = IdIndex(self.set_ids, self.path, "candidate_set_id")
        self._offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]) if lengths else np.zeros(1, np.int64)

    def __getstate__(self) -> dict:
        return {"world_dir": str(self.world_dir), "store": self.store}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["world_dir"], state["store"])

    def __len__(self) -> int:
        return int(self.set_ids.size)

    @property
    def num_candidates(self) -> int:
        """Candidates over all sets (memory: 4 bytes each)."""
        return int(self._rows.size)

    def index(self, set_ids: IdArray) -> np.ndarray:
        """Table positions of ``set_ids``; unknown ids raise WorldDataError (field candidate_set_id)."""
        return self._index.rows(as_id_array(set_ids))

    def sizes(self, set_ids: IdArray) -> np.ndarray:
        """Number of candidates N of each set."""
        idx = self.index(set_ids)
        return self._offsets[idx + 1] - self._offsets[idx]

    def rows(self, set_id: int) -> np.ndarray:
        """(N,) int64 store rows of one set, ascending ad id."""
        i = int(self.index(np.asarray([set_id]))[0])
        return self._rows[self._offsets[i] : self._offsets[i + 1]].astype(np.int64)

    def ids(self, set_id: int) -> np.ndarray:
        """(N,) int64 ad ids of one set, ascending."""
        return self.store.ids[self.rows(set_id)]
