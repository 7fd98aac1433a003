"""World generation (docs/design.md §1): determinism, sizes, candidate sets, splits, logs, behaviours."""
from __future__ import annotations

import hashlib
import json
import resource
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from egakit.sim import generate_world, get_preset, load_world_meta, read_requests, read_table, request_files
from egakit.sim.entities import equal_count_buckets
from egakit.sim.geo import CityGrid, within_radius
from egakit.sim.schema import SPLITS
from egakit.sim.supply import SupplyStates

TINY = get_preset("tiny")


def _table_hashes(world_dir) -> dict[str, str]:
    """sha256 of every table's content (Arrow IPC of the data) plus world.json."""
    out = {}
    for path in sorted(world_dir.rglob("*.parquet")):
        sink = pa.BufferOutputStream()
        table = pq.read_table(path)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        out[str(path.relative_to(world_dir))] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    out["world.json"] = hashlib.sha256((world_dir / "world.json").read_bytes()).hexdigest()
    out["truth/params.json"] = hashlib.sha256((world_dir / "truth" / "params.json").read_bytes()).hexdigest()
    return out


def test_same_seed_gives_identical_world_and_other_seed_differs(tiny_world, tmp_path):
    again = tmp_path / "again"
    generate_world("tiny", again, seed=0, progress=False)
    assert _table_hashes(again) == _table_hashes(tiny_world)
    other = tmp_path / "other"
    generate_world("tiny", other, seed=1, progress=False)
    h0, h1 = _table_hashes(tiny_world), _table_hashes(other)
    assert h0.keys() == h1.keys()
    for name in ("ads.parquet", "users.parquet", "candidate_sets.parquet", "requests/pretrain/part-00000.parquet"):
        assert h0[name] != h1[name], name


def test_world_json_sizes_and_vocab(tiny_world):
    meta = load_world_meta(tiny_world)
    g = TINY.geo
    assert meta["preset"] == "tiny" and meta["seed"] == 0 and meta["K"] == TINY.logging.K
    assert meta["max_behaviours"] == TINY.users.max_behaviours <= 50
    assert meta["sizes"]["ads"] == TINY.catalog.n_ads and meta["sizes"]["users"] == TINY.users.n_users
    assert sum(meta["requests_per_split"].values()) == meta["sizes"]["requests"] == TINY.requests.n_requests
    vocab = meta["vocab"]
    assert vocab["price_level"] == 6 and vocab["hour"] == 24
    assert vocab["geo_cell"] == vocab["home_cell"] == g.grid * g.grid
    for key in ("category", "brand", "age_bucket", "gender"):
        assert vocab[key] >= 2
    ads = read_table(tiny_world, "ads")  # read_table validates every value against the vocab
    assert ads.column("category").to_numpy().max() < vocab["category"]
    n = meta["candidates_per_request"]
    assert 20 <= n["median"] <= 200 and n["max"] <= TINY.catalog.n_ads
    # sizes per split on disk
    for split in SPLITS:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in request_files(tiny_world, split))
        assert rows == meta["requests_per_split"][split]


def test_ids_sorted_sparse_and_tables_aligned(tiny_world):
    ads = read_table(tiny_world, "ads")
    truth = read_table(tiny_world, "truth_ads")
    ids = ads.column("ad_id").to_numpy()
    assert np.all(np.diff(ids) > 0) and not np.array_equal(ids, np.arange(len(ids)))
    assert np.array_equal(ids, truth.column("ad_id").to_numpy())
    assert np.all(ads.column("bid").to_numpy() == truth.column("value").to_numpy())  # truthful bidders
    lengths = truth.column("creative_attr").combine_chunks().value_lengths().to_numpy()
    assert np.array_equal(lengths, ads.column("n_creatives").to_numpy())
    assert set(np.unique(lengths)) <= set(range(1, TINY.catalog.max_creatives + 1))
    assert len(np.unique(ads.column("poi_id").to_numpy())) < len(ids)  # some shops run several ads
    org = read_table(tiny_world, "organics")
    assert len(np.intersect1d(org.column("poi_id").to_numpy(), ads.column("poi_id").to_numpy())) > 0


def test_popularity_bucket_is_the_equal_count_rank_of_popularity(tiny_world):
    ads = read_table(tiny_world, "ads")
    n_buckets = load_world_meta(tiny_world)["vocab"]["popularity_bucket"]
    bucket = ads.column("popularity_bucket").to_numpy()
    popularity = ads.column("popularity").to_numpy()
    counts = np.bincount(bucket, minlength=n_buckets)
    assert counts.size == n_buckets and counts.max() - counts.min() <= 1  # equal-count bins
    order = np.argsort(popularity, kind="stable")
    assert np.all(np.diff(bucket[order]) >= 0)  # more popular never sits in a lower bucket


def test_equal_count_buckets_by_rank():
    values = np.array([5.0, -1.0, 3.0, 3.0, 0.0, 9.0, 2.0])
    assert equal_count_buckets(values, 7).tolist() == [5, 0, 3, 4, 1, 6, 2]  # ties: by position
    assert equal_count_buckets(values, 1).tolist() == [0] * 7
    counts = np.bincount(equal_count_buckets(np.random.default_rng(0).normal(size=1000), 16), minlength=16)
    assert counts.size == 16 and counts.sum() == 1000 and counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="n_buckets"):
        equal_count_buckets(values, 0)


def test_candidate_sets_are_the_available_ads_within_the_radius(tiny_world):
    """Each set is its cell's radius set (brute force over all ads) thinned by its supply state:
    ads of busy categories drop out, the rest stay; a cell's states differ; the ads kept match
    the configured rates."""
    meta = load_world_meta(tiny_world)
    grid = CityGrid(meta["city"]["grid"], meta["city"]["city_size"], meta["city"]["radius"])
    truth = read_table(tiny_world, "truth_ads", ["ad_id", "x", "y"])
    ids, x, y = (truth.column(c).to_numpy() for c in ("ad_id", "x", "y"))
    category = read_table(tiny_world, "ads", ["category"]).column("category").to_numpy()
    supply = SupplyStates.from_json(meta["supply"])
    n_states = TINY.supply.states_per_cell
    assert supply.config == TINY.supply and n_states > 1
    sets = read_table(tiny_world, "candidate_sets")
    assert np.array_equal(sets.column("candidate_set_id").to_numpy(), np.arange(sets.num_rows))
    assert np.array_equal(sets.column("supply_state").to_numpy(), np.arange(sets.num_rows) % n_states)
    kept = total = 0
    touched_share: list[float] = []
    by_cell: dict[int, list] = {}
    for s, (cell, cand) in enumerate(zip(sets.column("geo_cell").to_pylist(), sets.column("ad_ids").to_pylist())):
        cx, cy = grid.centre(cell)
        d2 = (x.astype(np.float64) - cx) ** 2 + (y.astype(np.float64) - cy) ** 2  # brute force, all ads
        radius_rows = np.flatnonzero(d2 <= grid.radius ** 2)
        assert len(radius_rows) >= TINY.geo.min_candidates
        assert np.array_equal(np.asarray(cand), ids[supply.rows(radius_rows, category, s)])
        assert len(cand) > TINY.logging.K
        # thinning is per category: a category that loses any ad is busy and keeps only a few
        cats, n_radius = np.unique(category[radius_rows], return_counts=True)
        n_kept = np.array([np.sum(category[np.searchsorted(ids, cand)] == c) for c in cats])
        touched_share.extend((n_kept / n_radius)[n_kept < n_radius].tolist())
        kept += len(cand)
        total += len(radius_rows)
        by_cell.setdefault(cell, []).append(tuple(cand))
    assert all(len(v) == n_states and len(set(v)) > 1 for v in by_cell.values())
    expect = 1.0 - TINY.supply.busy_share * (1.0 - TINY.supply.busy_availability)
    assert kept / total == pytest.approx(expect, abs=0.05)
    assert np.mean(touched_share) < 2 * TINY.supply.busy_availability + 0.1  # per-ad thinning: ≈ 0.55
    assert np.array_equal(within_radius(x, y, 1.0, 1.0, 2.0), (x - 1.0) ** 2 + (y - 1.0) ** 2 <= 4.0)


def test_split_days_disjoint_ordered_and_time_sorted(tiny_world):
    meta = load_world_meta(tiny_world)
    ranges = [meta["split_days"][s] for s in SPLITS]
    assert ranges[0][0] == meta["history_days"]
    for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
        assert a0 < a1 == b0 < b1  # contiguous, ordered, non-empty
    last_id = -1
    for split, (lo, hi) in zip(SPLITS, ranges):
        t = read_requests(tiny_world, split, ["request_id", "day", "hour"])
        day = t.column("day").to_numpy()
        assert day.min() >= lo and day.max() < hi
        rid = t.column("request_id").to_numpy()
        assert rid[0] > last_id and np.all(np.diff(rid) > 0)
        last_id = rid[-1]
        when = day.astype(np.int64) * 24 + t.column("hour").to_numpy()
        assert np.all(np.diff(when) >= 0)


def test_row_groups_have_the_configured_size(tiny_world):
    size = load_world_meta(tiny_world)["row_group_size"]
    for split in SPLITS:
        for f in request_files(tiny_world, split):
            md = pq.ParquetFile(f).metadata
            rows = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
            assert all(r == size for r in rows[:-1]) and 0 < rows[-1] <= size


def test_logged_requests_are_consistent(tiny_world):
    meta = load_world_meta(tiny_world)
    K = meta["K"]
    sets = read_table(tiny_world, "candidate_sets")
    set_ads = [np.asarray(a) for a in sets.column("ad_ids").to_pylist()]
    set_cell = sets.column("geo_cell").to_numpy()
    ads = read_table(tiny_world, "ads", ["ad_id", "bid"])
    ad_ids, bids = ads.column("ad_id").to_numpy(), ads.column("bid").to_numpy()
    grid = CityGrid(meta["city"]["grid"], meta["city"]["city_size"], meta["city"]["radius"])
    reserve = meta["logging_policy"]["reserve_price"]
    for split in SPLITS:
        t = read_requests(tiny_world, split).to_pylist()
        for r in t:
            cand = set_ads[r["candidate_set_id"]]
            assert set_cell[r["candidate_set_id"]] == r["geo_cell"] == grid.cell_of(r["loc_x"], r["loc_y"])
            ex = np.asarray(r["exposed_ids"])
            assert len(ex) == K and len(set(ex)) == K and np.isin(ex, cand).all()
            price = np.asarray(r["exposed_prices"])
            bid = bids[np.searchsorted(ad_ids, ex)]
            assert np.all(price <= bid) and np.all(price >= min(reserve, bid.min()))
            pl = np.asarray(r["platform_ids"])
            assert len(pl) == min(meta["logging_policy"]["platform_sample"], len(cand) - K)
            assert len(set(pl)) == len(pl) and np.isin(pl, cand).all() and not np.isin(pl, ex).any()
            assert set(r["clicks"]) <= {0, 1} and set(r["platform_clicks"]) <= {0, 1}


def test_ctr_per_exposure_plausible_and_slot_ctr_decreasing(tiny_world):
    clicks = np.concatenate([
        np.asarray(read_requests(tiny_world, s, ["clicks"]).column("clicks").combine_chunks().flatten()).reshape(-1, 5)
        for s in SPLITS
    ]).astype(np.float64)
    assert 0.01 <= clicks.mean() <= 0.10
    by_slot = clicks.mean(axis=0)
    assert by_slot[0] > by_slot[-1]


def test_behaviours_precede_requests_and_match_items(tiny_world):
    meta = load_world_meta(tiny_world)
    users = read_table(tiny_world, "users")
    ads = read_table(tiny_world, "ads", ["ad_id", "category", "geo_cell"])
    org = read_table(tiny_world, "organics", ["item_id", "category"])
    lengths = users.column("bhv_item_id").combine_chunks().value_lengths().to_numpy()
    assert lengths.min() >= TINY.users.min_behaviours and lengths.max() <= meta["max_behaviours"]
    first_request_hour = meta["split_days"]["pretrain"][0] * 24
    for u in users.slice(0, 50).to_pylist():
        ts = np.asarray(u["bhv_ts"])
        assert np.all(np.diff(ts) >= 0) and ts.max() < first_request_hour
        assert np.array_equal(ts % 24, u["bhv_hour"])
        for item, kind, cat in zip(u["bhv_item_id"], u["bhv_kind"], u["bhv_category"]):
            table, key = (ads, "ad_id") if kind == 0 else (org, "item_id")
            row = int(np.searchsorted(table.column(key).to_numpy(), item))
            assert table.column(key)[row].as_py() == item and table.column("category")[row].as_py() == cat
    kinds = np.asarray(users.column("bhv_kind").combine_chunks().flatten())
    assert 0 < kinds.mean() < 1  # both ads and organic items are clicked


def test_preset_overrides_and_errors(tmp_path):
    p = get_preset("tiny", n_requests=300, K=3)
    assert p.requests.n_requests == 300 and p.logging.K == 3
    with pytest.raises(ValueError, match="unknown world preset field"):
        get_preset("tiny", n_reqests=3)
    with pytest.raises(ValueError, match="unknown world preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="min_candidates must exceed K"):
        get_preset("tiny", K=40)
    meta = generate_world("tiny", tmp_path / "w", seed=3, progress=False, n_requests=300, K=3)
    assert meta["K"] == 3 and meta["sizes"]["requests"] == 300
    t = read_requests(tmp_path / "w", "pretrain", ["exposed_ids"])
    assert set(t.column("exposed_ids").combine_chunks().value_lengths().to_numpy()) == {3}


def test_tiny_generation_is_fast(tmp_path):
    start = time.perf_counter()
    generate_world("tiny", tmp_path / "w", seed=5, progress=False)
    assert time.perf_counter() - start < 10.0


@pytest.mark.slow
def test_small_preset_sizes_and_time(tmp_path):
    start = time.perf_counter()
    meta = generate_world("small", tmp_path / "small", seed=0, progress=False)
    elapsed = time.perf_counter() - start
    n = meta["candidates_per_request"]
    # a request sees one supply state of its cell: half the categories keep a tenth of their ads
    assert 500 <= n["min"] and 1500 <= n["median"] <= 2500 and n["max"] <= 5000
    assert meta["sizes"]["requests"] >= 90_000 and meta["max_behaviours"] == 200
    assert elapsed < 180.0, f"small took {elapsed:.0f} s"
    print(json.dumps({"small_seconds": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
