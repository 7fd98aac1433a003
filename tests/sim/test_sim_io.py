"""I/O validation (docs/design.md §12): every bad input is a WorldDataError naming the file, field and row."""
from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from egakit.errors import WorldDataError
from egakit.sim import io
from egakit.sim.schema import SCHEMA_VERSION, SPLITS, TABLES, with_metadata


def _copy(world, tmp_path):
    dst = tmp_path / "world"
    shutil.copytree(world, dst)
    return dst


def _set(table: pa.Table, name: str, row: int, value) -> pa.Table:
    """``table`` with ``table[name][row] = value`` (same type)."""
    col = table.column(name).to_pylist()
    col[row] = value
    idx = table.schema.get_field_index(name)
    return table.set_column(idx, table.schema.field(idx), pa.array(col, table.schema.field(idx).type))


def _expect(exc: pytest.ExceptionInfo, path_part: str, field, row) -> None:
    e = exc.value
    msg = str(e)
    assert path_part in msg and (e.path and path_part in e.path)
    assert e.field == field and e.row == row
    if field is not None:
        assert f"field {field!r}" in msg
    if row is not None:
        assert f"row {row}:" in msg


def test_a_valid_world_reads_cleanly(tiny_world):
    meta = io.load_world_meta(tiny_world)
    for name in TABLES:
        if name != "requests":
            assert io.read_table(tiny_world, name).num_rows > 0
    for split in SPLITS:
        assert io.read_requests(tiny_world, split).num_rows == meta["requests_per_split"][split]
    part = io.request_files(tiny_world, "test")[0]
    pf = io.check_file_schema(part, "requests")
    io.validate_batch(pf.read_row_group(0), "requests", part, 0, meta=meta)
    for rb in pf.iter_batches(batch_size=100, columns=["request_id", "clicks", "exposed_ids"]):  # streaming
        io.validate_batch(rb, "requests", part, 0, columns=["request_id", "clicks", "exposed_ids"], meta=meta)
    rb = next(pf.iter_batches(batch_size=50))
    bad = pa.RecordBatch.from_arrays(
        [rb.column(i) if rb.schema.names[i] != "hour" else pa.array([30] + [1] * 49, pa.int32()) for i in range(rb.num_columns)],
        schema=rb.schema,
    )
    with pytest.raises(WorldDataError, match=r"hour must be in \[0, 23\], got 30") as exc:
        io.validate_batch(bad, "requests", part, 500)
    _expect(exc, "part-00000.parquet", "hour", 500)


def test_error_message_format():
    e = WorldDataError("ads.parquet", "bid", 17, "bid must be > 0, got -1.0")
    assert str(e) == "ads.parquet: field 'bid' row 17: bid must be > 0, got -1.0"
    assert isinstance(e, ValueError) and (e.path, e.field, e.row) == ("ads.parquet", "bid", 17)
    import pickle

    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.row == 17


def test_bid_not_positive(tiny_world):
    ads = io.read_table(tiny_world, "ads")
    with pytest.raises(WorldDataError) as exc:
        io.validate_batch(_set(ads, "bid", 17, -1.0), "ads", "ads.parquet")
    assert str(exc.value) == "ads.parquet: field 'bid' row 17: bid must be > 0, got -1.0"
    with pytest.raises(WorldDataError) as exc:
        io.validate_batch(_set(ads, "bid", 4, 0.0), "ads", "ads.parquet", row_offset=1000)
    _expect(exc, "ads.parquet", "bid", 1004)


def test_nan_and_inf(tiny_world):
    ads = io.read_table(tiny_world, "ads")
    with pytest.raises(WorldDataError, match="must be finite, got nan") as exc:
        io.validate_batch(_set(ads, "bid", 17, float("nan")), "ads", "ads.parquet")
    _expect(exc, "ads.parquet", "bid", 17)
    with pytest.raises(WorldDataError, match="must be finite, got inf") as exc:
        io.validate_batch(_set(ads, "popularity", 3, float("inf")), "ads", "ads.parquet")
    _expect(exc, "ads.parquet", "popularity", 3)
    req = io.read_requests(tiny_world, "test")
    prices = req.column("exposed_prices").to_pylist()
    prices[2][3] = float("-inf")
    bad = req.set_column(req.schema.get_field_index("exposed_prices"), "exposed_prices",
                         pa.array(prices, pa.list_(pa.float32())))
    with pytest.raises(WorldDataError, match="finite") as exc:
        io.validate_batch(bad, "requests", "requests/test/part-00000.parquet", row_offset=100)
    _expect(exc, "part-00000.parquet", "exposed_prices", 102)


def test_missing_column_and_wrong_type(tiny_world, tmp_path):
    ads = io.read_table(tiny_world, "ads")
    no_bid = ads.drop_columns(["bid"])
    with pytest.raises(WorldDataError, match="missing column") as exc:
        io.validate_batch(no_bid, "ads", "ads.parquet")
    _expect(exc, "ads.parquet", "bid", None)
    path = tmp_path / "ads.parquet"
    pq.write_table(no_bid.replace_schema_metadata(with_metadata(no_bid.schema, "ads").metadata), path)
    with pytest.raises(WorldDataError, match="missing column") as exc:
        io.check_file_schema(path, "ads")
    _expect(exc, "ads.parquet", "bid", None)
    io.check_file_schema(path, "ads", columns=["ad_id", "category"])  # a projection without bid is fine
    as_double = ads.set_column(ads.schema.get_field_index("bid"), "bid", ads.column("bid").cast(pa.float64()))
    with pytest.raises(WorldDataError, match="wrong type double, expected float") as exc:
        io.validate_batch(as_double, "ads", "ads.parquet")
    _expect(exc, "ads.parquet", "bid", None)


def test_wrong_schema_version(tiny_world, tmp_path):
    world = _copy(tiny_world, tmp_path)
    meta = json.loads((world / "world.json").read_text())
    meta["schema_version"] = 999
    (world / "world.json").write_text(json.dumps(meta))
    with pytest.raises(WorldDataError, match=f"schema version 999, this egakit reads version {SCHEMA_VERSION}") as exc:
        io.load_world_meta(world)
    _expect(exc, "world.json", "schema_version", None)
    with pytest.raises(WorldDataError, match="schema version 999"):
        io.read_table(world, "ads")
    # a file from another schema version
    ads = pq.read_table(tiny_world / "ads.parquet")
    old = ads.replace_schema_metadata({b"egakit.schema_version": b"0", b"egakit.table": b"ads"})
    path = tmp_path / "old_ads.parquet"
    pq.write_table(old, path)
    with pytest.raises(WorldDataError, match="file written with schema version 0") as exc:
        io.check_file_schema(path, "ads")
    _expect(exc, "old_ads.parquet", "egakit.schema_version", None)
    with pytest.raises(WorldDataError, match="schema version 0") as exc:
        io.validate_batch(old, "ads", path)
    pq.write_table(ads.replace_schema_metadata(None), path)
    with pytest.raises(WorldDataError, match="no egakit schema version"):
        io.check_file_schema(path, "ads")
    with pytest.raises(WorldDataError, match="holds table 'ads', expected 'organics'"):
        io.check_file_schema(tiny_world / "ads.parquet", "organics")


def test_empty_candidate_set_and_unsorted_ids(tiny_world):
    sets = io.read_table(tiny_world, "candidate_sets")
    with pytest.raises(WorldDataError, match="empty candidate set") as exc:
        io.validate_batch(_set(sets, "ad_ids", 2, []), "candidate_sets", "candidate_sets.parquet")
    _expect(exc, "candidate_sets.parquet", "ad_ids", 2)
    ids = sets.column("ad_ids")[5].as_py()
    with pytest.raises(WorldDataError, match="unique and ascending") as exc:
        io.validate_batch(_set(sets, "ad_ids", 5, ids[::-1]), "candidate_sets", "candidate_sets.parquet")
    _expect(exc, "candidate_sets.parquet", "ad_ids", 5)
    ads = io.read_table(tiny_world, "ads")
    dup = _set(ads, "ad_id", 9, ads.column("ad_id")[8].as_py())
    with pytest.raises(WorldDataError, match="unique and ascending") as exc:
        io.validate_batch(dup, "ads", "ads.parquet")
    _expect(exc, "ads.parquet", "ad_id", 9)


def test_empty_exposure_and_length_mismatch(tiny_world):
    req = io.read_requests(tiny_world, "test")
    K = io.load_world_meta(tiny_world)["K"]
    clicks = _set(req, "clicks", 1, [0] * (K - 1))
    with pytest.raises(WorldDataError, match=f"list length {K - 1} differs from exposed_ids's {K}") as exc:
        io.validate_batch(clicks, "requests", "part-00000.parquet")
    _expect(exc, "part-00000.parquet", "clicks", 1)
    empty = req
    for col in ("exposed_ids", "exposed_creatives", "exposed_prices", "clicks"):
        empty = _set(empty, col, 4, [])
    with pytest.raises(WorldDataError, match="empty list") as exc:
        io.validate_batch(empty, "requests", "part-00000.parquet")
    _expect(exc, "part-00000.parquet", "exposed_ids", 4)
    with pytest.raises(WorldDataError, match=r"clicks must be in \[0, 1\], got 2") as exc:
        io.validate_batch(_set(req, "clicks", 3, [0, 2, 0, 0, 0]), "requests", "part-00000.parquet")
    _expect(exc, "part-00000.parquet", "clicks", 3)


def test_nulls_and_vocabulary(tiny_world):
    meta = io.load_world_meta(tiny_world)
    ads = io.read_table(tiny_world, "ads")
    with pytest.raises(WorldDataError, match="null value") as exc:
        io.validate_batch(_set(ads, "brand", 6, None), "ads", "ads.parquet")
    _expect(exc, "ads.parquet", "brand", 6)
    with pytest.raises(WorldDataError, match="vocabulary size") as exc:
        io.validate_batch(_set(ads, "category", 8, 999), "ads", "ads.parquet", meta=meta)
    _expect(exc, "ads.parquet", "category", 8)
    with pytest.raises(WorldDataError, match=r"price_level must be in \[1, 5\]"):
        io.validate_batch(_set(ads, "price_level", 8, 0), "ads", "ads.parquet")


def test_unknown_ids_via_the_helper(tiny_world):
    known = io.read_table(tiny_world, "ads", ["ad_id"]).column("ad_id").to_numpy()
    io.check_known_ids(known[[3, 1, 2]], known, "ads.parquet", "ad_id")
    ids = known[:10].copy()
    ids[7] = 5  # below every ad id
    with pytest.raises(WorldDataError, match="unknown id 5") as exc:
        io.check_known_ids(ids, known, "users.parquet", "bhv_item_id", row_offset=40)
    _expect(exc, "users.parquet", "bhv_item_id", 47)
    batch = torch.full((3, 6), -1, dtype=torch.int64)  # padded (B, N) ids
    batch[:, :2] = torch.from_numpy(known[:6].reshape(3, 2).copy())
    io.check_known_ids(batch, known, "batch", "cand_ids")
    batch[2, 1] = int(known.max()) + 1
    with pytest.raises(WorldDataError, match="unknown id") as exc:
        io.check_known_ids(batch, known, "batch", "cand_ids")
    _expect(exc, "batch", "cand_ids", 2)
    lists = pa.array([[int(known[0])], [], [int(known[1]), 12345]], pa.list_(pa.int64()))
    with pytest.raises(WorldDataError, match="unknown id 12345") as exc:
        io.check_known_ids(lists, known, "requests/test/part-00000.parquet", "platform_ids")
    _expect(exc, "part-00000.parquet", "platform_ids", 2)


def test_corrupt_and_truncated_parquet(tiny_world, tmp_path):
    world = _copy(tiny_world, tmp_path)
    ads = world / "ads.parquet"
    data = ads.read_bytes()
    ads.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorldDataError, match="corrupt or truncated Parquet") as exc:
        io.read_table(world, "ads")
    _expect(exc, "ads.parquet", None, None)
    part = io.request_files(world, "pretrain")[0]
    raw = bytearray(part.read_bytes())
    raw[200:400] = b"\x00" * 200  # damage a data page, keep the footer
    part.write_bytes(bytes(raw))
    with pytest.raises(WorldDataError) as exc:
        list(io.iter_request_batches(world, "pretrain"))
    assert "part-00000.parquet" in str(exc.value)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not a parquet file at all")
    with pytest.raises(WorldDataError, match="corrupt or truncated") as exc:
        io.check_file_schema(junk, "ads")
    _expect(exc, "junk.parquet", None, None)


def test_missing_files(tmp_path):
    with pytest.raises(WorldDataError, match="world.json not found") as exc:
        io.load_world_meta(tmp_path)
    _expect(exc, "world.json", None, None)
    with pytest.raises(WorldDataError, match="file not found"):
        io.check_file_schema(tmp_path / "ads.parquet", "ads")
    with pytest.raises(WorldDataError, match="no request folder"):
        io.request_files(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown split"):
        io.request_files(tmp_path, "train")
