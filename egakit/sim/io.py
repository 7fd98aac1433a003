"""Reading and writing a world's Parquet tables, with validation (docs/design.md §1, §12).

Every problem is a :class:`egakit.errors.WorldDataError` naming the file, the field and the row:
missing columns, wrong types, a file or world from another schema version, nulls, NaN / inf in
float fields, bids (and other strictly positive fields) ≤ 0, out-of-range categorical values,
empty candidate sets or exposure lists, list-length mismatches (exposed_ids vs clicks), unsorted
ids, corrupt or truncated Parquet. Unknown ids are checked where the data meets the stores,
with :func:`check_known_ids`.

Readers:
- :func:`load_world_meta` — world.json, validated;
- :func:`read_table` — a single-file table (ads, organics, users, candidate_sets, truth_*);
- :func:`request_files`, :func:`iter_request_batches`, :func:`read_requests` — the request parts;
- :func:`check_file_schema` + :func:`validate_batch` — for streaming readers (the DataModules
  open a file with the first and validate every row group / record batch with the second).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from egakit.errors import WorldDataError
from egakit.sim.schema import (
    AD_CATEGORICAL, META_TABLE_KEY, META_VERSION_KEY, SCHEMA_VERSION, SPLITS, TABLES, with_metadata,
)

PathType = Union[str, PathLike]
WORLD_JSON = "world.json"
REQUEST_PART_GLOB = "part-*.parquet"
PARQUET_COMPRESSION = "zstd"

#: Keys world.json must have (the generator writes more).
WORLD_REQUIRED_KEYS = (
    "schema_version", "preset", "seed", "K", "max_behaviours", "vocab", "split_days", "row_group_size",
    "requests_per_split", "sizes", "city", "supply",
)


# ----------------------------------------------------------------------------------------------
# Validation rules per table


@dataclass(frozen=True)
class Rules:
    """Value rules of one table (column types come from :mod:`egakit.sim.schema`).

    Every float column (and list-of-float column) must be finite and no column may hold nulls;
    those two need no entry here.
    """

    positive: tuple = ()  # > 0 (scalars or list values)
    nonnegative: tuple = ()  # ≥ 0
    ranges: dict = field(default_factory=dict)  # column -> (lo, hi) inclusive
    vocab: dict = field(default_factory=dict)  # column -> world.json vocab key (value < vocab size)
    max_value: dict = field(default_factory=dict)  # column -> world.json key (value ≤ that)
    nonempty_lists: tuple = ()
    same_length: tuple = ()  # groups of list columns that must have equal lengths per row
    sorted_lists: tuple = ()  # list columns strictly ascending within each row
    max_len: dict = field(default_factory=dict)  # list column -> world.json key bounding its length
    sorted_key: Optional[str] = None  # id column strictly ascending over the rows


PRICE_LEVEL_RANGE = (1, 5)  # schema: price_level 1..5
HOUR_RANGE = (0, 23)
BINARY = (0, 1)  # click labels, behaviour kind
_AD_VOCAB = {name: name for name in AD_CATEGORICAL}  # each ad feature has a world.json vocab of its name
_BHV = ("bhv_item_id", "bhv_kind", "bhv_ts", "bhv_category", "bhv_brand", "bhv_price_level", "bhv_geo_cell", "bhv_hour")
_EXPOSED = ("exposed_ids", "exposed_creatives", "exposed_prices", "clicks")

RULES: dict[str, Rules] = {
    "ads": Rules(
        positive=("bid", "popularity"),
        nonnegative=("ad_id", "poi_id", "category", "brand", "geo_cell", "popularity_bucket"),
        ranges={"price_level": PRICE_LEVEL_RANGE},
        vocab=_AD_VOCAB,
        max_value={"n_creatives": "max_creatives"},
        sorted_key="ad_id",
    ),
    "organics": Rules(
        positive=("gmv_score",),
        nonnegative=("item_id", "poi_id", "category", "brand", "geo_cell"),
        ranges={"price_level": PRICE_LEVEL_RANGE},
        vocab=_AD_VOCAB,
        sorted_key="item_id",
    ),
    "users": Rules(
        nonnegative=("user_id", "age_bucket", "gender", "home_cell", "bhv_item_id", "bhv_ts", "bhv_category",
                     "bhv_brand", "bhv_geo_cell"),
        ranges={"bhv_kind": BINARY, "bhv_hour": HOUR_RANGE, "bhv_price_level": PRICE_LEVEL_RANGE},
        vocab={"age_bucket": "age_bucket", "gender": "gender", "home_cell": "home_cell", "bhv_category": "category",
               "bhv_brand": "brand", "bhv_geo_cell": "geo_cell"},
        same_length=(_BHV,),
        max_len={"bhv_item_id": "max_behaviours"},
        sorted_key="user_id",
    ),
    "candidate_sets": Rules(
        nonnegative=("candidate_set_id", "geo_cell", "supply_state", "ad_ids"),
        vocab={"geo_cell": "geo_cell"},
        nonempty_lists=("ad_ids",),
        sorted_lists=("ad_ids",),
        sorted_key="candidate_set_id",
    ),
    "requests": Rules(
        nonnegative=("request_id", "day", "user_id", "geo_cell", "candidate_set_id", "exposed_ids",
                     "exposed_creatives", "exposed_prices", "platform_ids", "loc_x", "loc_y"),
        ranges={"hour": HOUR_RANGE, "clicks": BINARY, "platform_clicks": BINARY},
        vocab={"geo_cell": "geo_cell"},
        nonempty_lists=("exposed_ids",),
        same_length=(_EXPOSED, ("platform_ids", "platform_clicks")),
        max_len={"exposed_ids": "K"},
    ),
    "truth_ads": Rules(positive=("value",), nonempty_lists=("latent", "creative_attr"), sorted_key="ad_id"),
    "truth_organics": Rules(nonempty_lists=("latent",), sorted_key="item_id"),
    "truth_users": Rules(positive=("hour_sensitivity",), nonempty_lists=("interest",), sorted_key="user_id"),
}


# ----------------------------------------------------------------------------------------------
# world.json


def load_world_meta(world_dir: PathType) -> dict:
    """Read and validate ``world_dir/world.json``; refuse a world from another schema version."""
    path = Path(world_dir) / WORLD_JSON
    if not path.is_file():
        raise WorldDataError(path, None, None, "world.json not found: not a world directory (make one with `ega world`)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorldDataError(path, None, None, f"unreadable world.json: {exc}") from exc
    if not isinstance(meta, dict):
        raise WorldDataError(path, None, None, "world.json must hold a JSON object")
    if "schema_version" not in meta:
        raise WorldDataError(path, "schema_version", None, "missing key (not an egakit world?)")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise WorldDataError(
            path, "schema_version", None,
            f"world written with schema version {meta['schema_version']!r}, this egakit reads version "
            f"{SCHEMA_VERSION}: regenerate the world with this egakit (`ega world`)",
        )
    for key in WORLD_REQUIRED_KEYS:
        if key not in meta:
            raise WorldDataError(path, key, None, "missing key in world.json")
    for split in SPLITS:
        if split not in meta["split_days"] or split not in meta["requests_per_split"]:
            raise WorldDataError(path, "split_days", None, f"split {split!r} missing")
    return meta


# ----------------------------------------------------------------------------------------------
# Files


def table_path(world_dir: PathType, name: str) -> Path:
    if name not in TABLES:
        raise ValueError(f"unknown world table {name!r}; tables: {sorted(TABLES)}")
    return Path(world_dir) / TABLES[name][0]


def check_file_schema(path: PathType, name: str, columns: Optional[Sequence[str]] = None) -> pq.ParquetFile:
    """Open a Parquet file of table ``name`` and check its metadata (schema version, table name)
    and the presence and types of the ``columns`` (default: all of the table's).

    Returns the open :class:`pyarrow.parquet.ParquetFile`. Corrupt / truncated files raise
    :class:`WorldDataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WorldDataError(path, None, None, "file not found")
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise WorldDataError(path, None, None, f"corrupt or truncated Parquet: {exc}") from exc
    meta = schema.metadata or {}
    version = meta.get(META_VERSION_KEY)
    if version is None:
        raise WorldDataError(path, META_VERSION_KEY.decode(), None, "no egakit schema version in the file's metadata")
    if version.decode(errors="replace") != str(SCHEMA_VERSION):
        raise WorldDataError(
            path, META_VERSION_KEY.decode(), None,
            f"file written with schema version {version.decode(errors='replace')}, this egakit reads version "
            f"{SCHEMA_VERSION}: regenerate the world",
        )
    table = meta.get(META_TABLE_KEY, b"").decode(errors="replace")
    if table != name:
        raise WorldDataError(path, META_TABLE_KEY.decode(), None, f"file holds table {table!r}, expected {name!r}")
    _check_columns(schema, name, path, columns)
    return pf


def _check_columns(schema: pa.Schema, name: str, path: PathType, columns: Optional[Sequence[str]]) -> None:
    expected = TABLES[name][1]
    wanted = expected.names if columns is None else list(columns)
    for col in wanted:
        if expected.get_field_index(col) < 0:
            raise ValueError(f"table {name!r} has no column {col!r}; columns: {expected.names}")
        idx = schema.get_field_index(col)
        if idx < 0:
            raise WorldDataError(path, col, None, "missing column")
        got, want = schema.field(idx).type, expected.field(col).type
        if got != want:
            raise WorldDataError(path, col, None, f"wrong type {got}, expected {want}")


def _wrap_read(path: PathType, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (pa.ArrowException, OSError) as exc:
        raise WorldDataError(path, None, None, f"corrupt or truncated Parquet: {exc}") from exc


def read_table(world_dir: PathType, name: str, columns: Optional[Sequence[str]] = None) -> pa.Table:
    """Read and validate a single-file table (``ads``, ``organics``, ``users``, ``candidate_sets``,
    ``truth_ads``, ``truth_organics``, ``truth_users``); ``columns`` selects a subset."""
    if name == "requests":
        raise ValueError("requests are split into parts: use read_requests / iter_request_batches")
    meta = load_world_meta(world_dir)
    path = table_path(world_dir, name)
    pf = check_file_schema(path, name, columns)
    table = _wrap_read(path, pf.read, columns=None if columns is None else list(columns))
    validate_batch(table, name, path, 0, columns=columns, meta=meta)
    return table


def request_files(world_dir: PathType, split: str) -> list[Path]:
    """Sorted part files of a split (``pretrain``, ``posttrain``, ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {SPLITS}")
    folder = Path(world_dir) / TABLES["requests"][0] / split
    if not folder.is_dir():
        raise WorldDataError(folder, None, None, f"no request folder for split {split!r}")
    files = sorted(folder.glob(REQUEST_PART_GLOB))
    if not files:
        raise WorldDataError(folder, None, None, f"no request parts for split {split!r}")
    return files


def iter_request_batches(
    world_dir: PathType, split: str, columns: Optional[Sequence[str]] = None
) -> Iterator[pa.Table]:
    """Validated row groups of a split, in order (row numbers in errors are per file)."""
    meta = load_world_meta(world_dir)
    for path in request_files(world_dir, split):
        pf = check_file_schema(path, "requests", columns)
        offset = 0
        for i in range(pf.num_row_groups):
            rg = _wrap_read(path, pf.read_row_group, i, columns=None if columns is None else list(columns))
            validate_batch(rg, "requests", path, offset, columns=columns, meta=meta)
            offset += rg.num_rows
            yield rg


def read_requests(world_dir: PathType, split: str, columns: Optional[Sequence[str]] = None) -> pa.Table:
    """A whole split as one validated table."""
    parts = list(iter_request_batches(world_dir, split, columns))
    return pa.concat_tables(parts)


# ----------------------------------------------------------------------------------------------
# Batch validation


def _array(batch: Union[pa.RecordBatch, pa.Table], name: str) -> pa.Array:
    col = batch.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _is_list(arr: pa.Array) -> bool:
    return pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)


def _values(arr: pa.Array) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(values, parent row per value or None for a scalar column)."""
    if _is_list(arr):
        flat = arr.flatten()
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        return flat.to_numpy(zero_copy_only=False), parents
    return arr.to_numpy(zero_copy_only=False), None


def _first_bad(bad: np.ndarray, parents: Optional[np.ndarray]) -> Optional[int]:
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return None
    return int(idx[0] if parents is None else parents[idx[0]])


def _fail(path, col, row, row_offset, reason):
    raise WorldDataError(path, col, row_offset + row, reason)


def validate_batch(
    batch: Union[pa.RecordBatch, pa.Table],
    name: str,
    path: PathType,
    row_offset: int = 0,
    *,
    columns: Optional[Sequence[str]] = None,
    meta: Optional[dict] = None,
) -> None:
    """Validate one record batch / row group / table of table ``name`` read from ``path``.

    Checks that the ``columns`` (default: every column of the table's schema; pass the projection
    a reader asked for) are present with the right types, the schema version in the batch's
    metadata when it carries one, nulls, NaN / inf in float fields, and the value rules of
    :data:`RULES` (``meta`` = world.json adds the vocabulary and length bounds). Row numbers in
    errors are ``row_offset`` + the row in the batch.
    """
    if name not in TABLES:
        raise ValueError(f"unknown world table {name!r}; tables: {sorted(TABLES)}")
    schema_meta = batch.schema.metadata or {}
    version = schema_meta.get(META_VERSION_KEY)
    if version is not None and version.decode(errors="replace") != str(SCHEMA_VERSION):
        raise WorldDataError(
            path, META_VERSION_KEY.decode(), None,
            f"data written with schema version {version.decode(errors='replace')}, this egakit reads version {SCHEMA_VERSION}",
        )
    expected = TABLES[name][1]
    required = list(expected.names if columns is None else columns)
    _check_columns(batch.schema, name, path, required)
    present = [c for c in expected.names if batch.schema.get_field_index(c) >= 0]
    _check_columns(batch.schema, name, path, present)
    rules = RULES[name]
    arrays = {c: _array(batch, c) for c in present}
    for col, arr in arrays.items():
        _check_column_values(arr, col, rules, path, row_offset, meta)
    for group in rules.same_length:
        cols = [c for c in group if c in arrays]
        if len(cols) < 2:
            continue
        ref = arrays[cols[0]].value_lengths().to_numpy(zero_copy_only=False)
        for col in cols[1:]:
            other = arrays[col].value_lengths().to_numpy(zero_copy_only=False)
            row = _first_bad(ref != other, None)
            if row is not None:
                _fail(path, col, row, row_offset,
                      f"list length {int(other[row])} differs from {cols[0]}'s {int(ref[row])}")
    key = rules.sorted_key
    if key in arrays and len(batch) > 1:
        ids = arrays[key].to_numpy(zero_copy_only=False)
        row = _first_bad(np.diff(ids) <= 0, None)
        if row is not None:
            _fail(path, key, row + 1, row_offset,
                  f"ids must be unique and ascending, got {int(ids[row + 1])} after {int(ids[row])}")


def _check_column_values(arr: pa.Array, col: str, rules: Rules, path, row_offset: int, meta: Optional[dict]) -> None:
    if arr.null_count:
        row = _first_bad(np.asarray(arr.is_null().to_numpy(zero_copy_only=False)), None)
        _fail(path, col, row, row_offset, "null value")
    is_list = _is_list(arr)
    if is_list:
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
        if arr.flatten().null_count:
            parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
            row = _first_bad(np.asarray(arr.flatten().is_null().to_numpy(zero_copy_only=False)), parents)
            _fail(path, col, row, row_offset, "null value inside the list")
        if col in rules.nonempty_lists:
            row = _first_bad(lengths == 0, None)
            if row is not None:
                what = "candidate set" if col == "ad_ids" else "list"
                _fail(path, col, row, row_offset, f"empty {what}")
        if meta is not None and col in rules.max_len:
            bound = int(meta[rules.max_len[col]])
            row = _first_bad(lengths > bound, None)
            if row is not None:
                _fail(path, col, row, row_offset, f"list length {int(lengths[row])} exceeds {rules.max_len[col]} = {bound}")
    values, parents = _values(arr)
    if values.size == 0:
        return
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        row = _first_bad(bad, parents)
        if row is not None:
            _fail(path, col, row, row_offset, f"{col} must be finite, got {values[np.flatnonzero(bad)[0]]}")
    checks = []
    if col in rules.positive:
        checks.append((values <= 0, "must be > 0"))
    if col in rules.nonnegative:
        checks.append((values < 0, "must be ≥ 0"))
    if col in rules.ranges:
        lo, hi = rules.ranges[col]
        checks.append(((values < lo) | (values > hi), f"must be in [{lo}, {hi}]"))
    if meta is not None and col in rules.vocab:
        size = int(meta["vocab"][rules.vocab[col]])
        checks.append((values >= size, f"must be < vocabulary size {size} (world.json vocab[{rules.vocab[col]!r}])"))
    if meta is not None and col in rules.max_value and rules.max_value[col] in meta:
        bound = meta[rules.max_value[col]]
        checks.append((values > bound, f"must be ≤ {rules.max_value[col]} = {bound}"))
    for bad, reason in checks:
        row = _first_bad(bad, parents)
        if row is not None:
            _fail(path, col, row, row_offset, f"{col} {reason}, got {values[np.flatnonzero(bad)[0]]}")
    if col in rules.sorted_lists and is_list:
        d = np.diff(values)
        same_row = parents[1:] == parents[:-1]
        row = _first_bad((d <= 0) & same_row, parents[1:])
        if row is not None:
            _fail(path, col, row, row_offset, "ids in the list must be unique and ascending")


# ----------------------------------------------------------------------------------------------
# Ids meeting the stores


def check_known_ids(
    ids: Any,
    known_sorted: Any,
    path: PathType,
    field: str,
    row_offset: int = 0,
    *,
    ignore: Optional[int] = -1,
) -> None:
    """Raise :class:`WorldDataError` on the first id of ``ids`` missing from ``known_sorted``.

    ids: a numpy array or torch tensor (1-D: one id per row; 2-D: rows × ids, e.g. a padded
    (B, N) batch), or a pyarrow (list) array / chunked array (one row per list). Values equal to
    ``ignore`` (padding, default -1) are skipped. known_sorted: ascending ids (numpy / torch).
    """
    known = _to_numpy(known_sorted).ravel()
    parents = None
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if isinstance(ids, pa.Array):
        values, parents = _values(ids)
    else:
        arr = _to_numpy(ids)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        values = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr
        if arr.ndim > 1:
            parents = np.repeat(np.arange(arr.shape[0]), values.shape[1])
        values = values.ravel()
    if values.size == 0:
        return
    pos = np.searchsorted(known, values).clip(max=max(len(known) - 1, 0))
    unknown = (known[pos] != values) if len(known) else np.ones(values.shape, bool)
    if ignore is not None:
        unknown &= values != ignore
    row = _first_bad(unknown, parents)
    if row is not None:
        bad = values[np.flatnonzero(unknown)[0]]
        raise WorldDataError(path, field, row_offset + row, f"unknown id {int(bad)}")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------
# Writing


def make_table(name: str, columns: dict) -> pa.Table:
    """A table of ``name`` with the exact schema (+ egakit metadata) from ``columns``."""
    return pa.Table.from_pydict(columns, schema=with_metadata(TABLES[name][1], name))


def parquet_options(name: str) -> dict:
    """Writer options of a table: zstd everywhere; candidate ids (sorted) delta-encoded."""
    opts: dict[str, Any] = {"compression": PARQUET_COMPRESSION}
    if name == "candidate_sets":
        opts["use_dictionary"] = ["candidate_set_id", "geo_cell", "supply_state"]
        opts["column_encoding"] = {"ad_ids.list.element": "DELTA_BINARY_PACKED"}
    return opts


def write_table(table: pa.Table, path: PathType, name: str, row_group_size: Optional[int] = None) -> None:
    """Write ``table`` (built with :func:`make_table`) to ``path``."""
    want = with_metadata(TABLES[name][1], name)
    if not table.schema.equals(want, check_metadata=True):
        raise ValueError(f"table {name!r} does not have the egakit schema:\n{table.schema}\nexpected:\n{want}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size, **parquet_options(name))


def list_array(offsets: np.ndarray, values: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """A list<value_type> array from int offsets (n + 1,) and flat values."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), pa.int32()), pa.array(values, value_type))


def fixed_list_array(matrix: np.ndarray, value_type: pa.DataType, lengths: Optional[np.ndarray] = None) -> pa.ListArray:
    """A list array from an (n, m) matrix, row i keeping its first ``lengths[i]`` values (all by default)."""
    n, m = matrix.shape
    if lengths is None:
        lengths = np.full(n, m, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = np.arange(m)[None, :] < lengths[:, None]
    return list_array(offsets, matrix[keep], value_type)
