"""Generate a synthetic LBS ad world (docs/design.md §1) into a directory of Parquet tables.

    generate_world("tiny", "worlds/tiny", seed=0)

Deterministic from the seed: every step draws from its own generator spawned from
``SeedSequence(seed)``, so the same seed gives identical tables. Memory stays bounded for the
``city`` preset: candidate sets (up to 10^5 ads each) are computed, used by the logging policy
and written one row group at a time; only the request logs (K + platform_sample ids per request)
are kept whole.

Layout and schemas: :mod:`egakit.sim.schema`. Hidden truth: ``truth/`` (only the oracle reads it).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from egakit.sim import io
from egakit.sim.behaviours import Behaviours, make_behaviours
from egakit.sim.click_model import TruthTables, crowding
from egakit.sim.contexts import RequestContexts, make_request_contexts, split_day_ranges
from egakit.sim.entities import HOURS, Ads, Organics, Users, make_ads, make_districts, make_organics, make_truth, make_users
from egakit.sim.fingerprint import stamp_world
from egakit.sim.geo import CityGrid, PointIndex
from egakit.sim.logging_policy import run_cascade
from egakit.sim.presets import WorldPreset, apply_overrides, get_preset
from egakit.sim.schema import SCHEMA_VERSION, SPLITS, TABLES, with_metadata
from egakit.sim.supply import SupplyStates
from egakit.sim.threads import torch_threads

#: Independent random streams, one per step (order fixed: adding a step appends here).
STAGES = ("geo", "truth", "catalog", "users", "behaviours", "requests", "logging", "supply")
PARAMS_JSON = "truth/params.json"


def generate_world(
    preset: Union[str, WorldPreset], out_dir, *, seed: int = 0, progress: bool = True, **overrides: Any
) -> dict:
    """Generate the world ``preset`` (a name from :data:`egakit.sim.presets.PRESETS` or a preset)
    with fields replaced by ``overrides`` into ``out_dir`` and return the world.json content.

    Existing world files in ``out_dir`` are replaced; other files there are left alone.
    """
    with torch_threads():  # one core (see egakit.sim.threads)
        return _generate(preset, out_dir, seed=seed, progress=progress, **overrides)


def _generate(preset, out_dir, *, seed: int, progress: bool, **overrides: Any) -> dict:
    if isinstance(preset, WorldPreset):
        cfg = apply_overrides(preset, **overrides)
    else:
        cfg = get_preset(preset, **overrides)
    out = Path(out_dir)
    _clear_world(out)
    streams = np.random.SeedSequence(seed).spawn(len(STAGES))
    rng = {name: np.random.default_rng(ss) for name, ss in zip(STAGES, streams)}
    g = cfg.geo
    grid = CityGrid(g.grid, g.city_size, g.radius)
    steps = tqdm(total=6, desc=f"world {cfg.name}", unit="step", disable=not progress)

    districts = make_districts(rng["geo"], g)
    truth, cat_tables = make_truth(rng["truth"], cfg.catalog, cfg.requests, cfg.cross, cfg.click, g.radius)
    ads, shops = make_ads(rng["catalog"], cfg.catalog, g, grid, districts, truth, cat_tables)
    organics = make_organics(rng["catalog"], cfg.catalog, g, grid, districts, truth, cat_tables, shops)
    ad_index = PointIndex(grid, ads.x, ads.y)
    org_index = PointIndex(grid, organics.x, organics.y)
    usable = ad_index.cell_counts() >= g.min_candidates
    if not usable.any():
        raise ValueError(f"preset {cfg.name!r}: no geo cell has ≥ {g.min_candidates} candidates; add ads or widen the radius")
    steps.update()
    users = make_users(rng["users"], cfg.users, cfg.catalog, g, grid, districts, truth, usable)
    steps.update()
    bhv = make_behaviours(
        rng["behaviours"], users, ads, organics, ad_index, org_index, truth, cfg.users, cfg.requests, progress
    )
    steps.update()
    ctx = make_request_contexts(rng["requests"], cfg.requests, cfg.users, grid, users, usable)
    # Candidate sets: states_per_cell supply states of every cell (set id = cell index · V + state).
    supply = SupplyStates(cfg.supply, seed, cfg.catalog.n_categories, min_available=cfg.logging.K + 1)
    n_states = cfg.supply.states_per_cell
    cells = np.flatnonzero(usable) if g.sets_for_all_cells else np.unique(ctx.cell)
    set_of_cell = np.full(grid.n_cells, -1, dtype=np.int64)
    set_of_cell[cells] = np.arange(len(cells))
    set_cells = np.repeat(cells, n_states)
    set_id = set_of_cell[ctx.cell] * n_states + rng["supply"].integers(n_states, size=len(ctx))

    _write_entities(out, ads, organics, users, bhv)
    steps.update()
    logs, set_sizes = _log_requests(
        rng["logging"], cfg, out, ads, users, ad_index, supply, set_cells, set_id, ctx, truth, progress
    )
    steps.update()
    split_days = split_day_ranges(cfg.requests, cfg.users)
    per_split = _write_requests(out, cfg, ads, users, ctx, set_id, logs, split_days)
    truth.save(out / PARAMS_JSON, extra={
        "preset": cfg.to_json(), "seed": int(seed),
        "districts": {"centres": districts.centres.tolist(), "weights": districts.weights.tolist()},
    })
    meta = _world_meta(cfg, seed, ads, organics, users, shops, supply, set_cells, set_sizes, set_id, split_days, per_split)
    meta = stamp_world(out, meta)  # last: the fingerprint hashes every file written above
    steps.update()
    steps.close()
    return meta


def _clear_world(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for rel in {TABLES[name][0].split("/")[0] for name in TABLES} | {io.WORLD_JSON}:
        p = out / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ----------------------------------------------------------------------------------------------
# Entities


def _write_entities(out: Path, ads: Ads, organics: Organics, users: Users, bhv: Behaviours) -> None:
    io.write_table(io.make_table("ads", {
        "ad_id": ads.ad_id, "poi_id": ads.poi_id, "category": ads.category, "brand": ads.brand,
        "price_level": ads.price_level, "geo_cell": ads.geo_cell, "n_creatives": ads.n_creatives,
        "bid": ads.bid, "popularity": ads.popularity, "popularity_bucket": ads.popularity_bucket,
    }), out / TABLES["ads"][0], "ads")
    io.write_table(io.make_table("organics", {
        "item_id": organics.item_id, "poi_id": organics.poi_id, "category": organics.category,
        "brand": organics.brand, "price_level": organics.price_level, "geo_cell": organics.geo_cell,
        "gmv_score": organics.gmv_score,
    }), out / TABLES["organics"][0], "organics")
    off = bhv.offsets
    io.write_table(io.make_table("users", {
        "user_id": users.user_id, "age_bucket": users.age_bucket, "gender": users.gender, "home_cell": users.home_cell,
        "bhv_item_id": io.list_array(off, bhv.item_id, pa.int64()),
        "bhv_kind": io.list_array(off, bhv.kind, pa.int8()),
        "bhv_ts": io.list_array(off, bhv.ts, pa.int64()),
        "bhv_category": io.list_array(off, bhv.category, pa.int32()),
        "bhv_brand": io.list_array(off, bhv.brand, pa.int32()),
        "bhv_price_level": io.list_array(off, bhv.price_level, pa.int32()),
        "bhv_geo_cell": io.list_array(off, bhv.geo_cell, pa.int32()),
        "bhv_hour": io.list_array(off, bhv.hour, pa.int32()),
    }), out / TABLES["users"][0], "users")
    io.write_table(io.make_table("truth_ads", {
        "ad_id": ads.ad_id,
        "latent": io.fixed_list_array(ads.latent, pa.float32()),
        "quality": ads.quality, "value": ads.value,
        "creative_attr": io.fixed_list_array(ads.creative_attr, pa.float32(), ads.n_creatives),
        "x": ads.x, "y": ads.y,
    }), out / TABLES["truth_ads"][0], "truth_ads")
    io.write_table(io.make_table("truth_organics", {
        "item_id": organics.item_id, "latent": io.fixed_list_array(organics.latent, pa.float32()),
        "quality": organics.quality, "x": organics.x, "y": organics.y,
    }), out / TABLES["truth_organics"][0], "truth_organics")
    io.write_table(io.make_table("truth_users", {
        "user_id": users.user_id, "interest": io.fixed_list_array(users.interest, pa.float32()),
        "home_x": users.home_x, "home_y": users.home_y, "hour_sensitivity": users.hour_sensitivity,
    }), out / TABLES["truth_users"][0], "truth_users")


# ----------------------------------------------------------------------------------------------
# Candidate sets + logging policy, one set at a time


class _Logs:
    """Request-level outputs of the logging policy (ad rows; -1 pads the platform sample)."""

    def __init__(self, n: int, k: int, p: int) -> None:
        self.exposed = np.full((n, k), -1, dtype=np.int64)
        self.creative = np.zeros((n, k), dtype=np.int32)
        self.price = np.zeros((n, k), dtype=np.float32)
        self.click = np.zeros((n, k), dtype=np.int8)
        self.platform = np.full((n, p), -1, dtype=np.int64)
        self.platform_click = np.zeros((n, p), dtype=np.int8)
        self.platform_len = np.zeros(n, dtype=np.int64)


def _log_requests(
    rng: np.random.Generator, cfg: WorldPreset, out: Path, ads: Ads, users: Users, ad_index: PointIndex,
    supply: SupplyStates, set_cells: np.ndarray, set_id: np.ndarray, ctx: RequestContexts, truth, progress: bool,
) -> tuple[_Logs, np.ndarray]:
    lg = cfg.logging
    tt = TruthTables.from_numpy(
        truth, latent=ads.latent, quality=ads.quality, category=ads.category, creative_attr=ads.creative_attr,
        creative_count=ads.n_creatives, xy=np.stack([ads.x, ads.y], axis=1), interest=users.interest,
        sensitivity=users.hour_sensitivity,
    )
    logs = _Logs(len(ctx), lg.K, lg.platform_sample)
    order = np.argsort(set_id, kind="stable")
    bounds = np.searchsorted(set_id[order], np.arange(len(set_cells) + 1))
    loc = ctx.loc
    set_sizes = np.zeros(len(set_cells), dtype=np.int64)
    schema = with_metadata(TABLES["candidate_sets"][1], "candidate_sets")
    per_group = cfg.io.sets_per_row_group
    buffer: dict[str, list] = {"candidate_set_id": [], "geo_cell": [], "supply_state": [], "ad_ids": []}
    with pq.ParquetWriter(out / TABLES["candidate_sets"][0], schema, **io.parquet_options("candidate_sets")) as writer:
        for s, cell in enumerate(tqdm(set_cells, desc="candidate sets + logging", unit="set", disable=not progress, leave=False)):
            rows = supply.rows(ad_index.cell_set(int(cell)), ads.category, s)
            crowd = crowding(ads.category[rows], ads.quality[rows], cfg.click.strong_quality)
            set_sizes[s] = len(rows)
            buffer["candidate_set_id"].append(s)
            buffer["geo_cell"].append(int(cell))
            buffer["supply_state"].append(s % cfg.supply.states_per_cell)
            buffer["ad_ids"].append(ads.ad_id[rows])
            if len(buffer["ad_ids"]) == per_group:
                _flush_sets(writer, buffer)
            members = order[bounds[s] : bounds[s + 1]]
            if members.size == 0:
                continue
            res = run_cascade(rng, tt, ads, rows, crowd, ctx.user_row[members], ctx.hour[members], loc[members], lg)
            logs.exposed[members] = res.exposed
            logs.creative[members] = res.creative
            logs.price[members] = res.price
            logs.click[members] = res.click
            n_plat = res.platform.shape[1]
            logs.platform[members, :n_plat] = res.platform
            logs.platform_click[members, :n_plat] = res.platform_click
            logs.platform_len[members] = n_plat
        if buffer["ad_ids"]:
            _flush_sets(writer, buffer)
    return logs, set_sizes


def _flush_sets(writer: pq.ParquetWriter, buffer: dict) -> None:
    lengths = np.array([len(a) for a in buffer["ad_ids"]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    table = io.make_table("candidate_sets", {
        "candidate_set_id": np.asarray(buffer["candidate_set_id"], dtype=np.int32),
        "geo_cell": np.asarray(buffer["geo_cell"], dtype=np.int32),
        "supply_state": np.asarray(buffer["supply_state"], dtype=np.int32),
        "ad_ids": io.list_array(offsets, np.concatenate(buffer["ad_ids"]), pa.int64()),
    })
    writer.write_table(table, row_group_size=len(lengths))
    for v in buffer.values():
        v.clear()


# ----------------------------------------------------------------------------------------------
# Request parts


def _write_requests(
    out: Path, cfg: WorldPreset, ads: Ads, users: Users, ctx: RequestContexts, set_id: np.ndarray, logs: _Logs,
    split_days: dict[str, tuple[int, int]],
) -> dict[str, int]:
    per_file = cfg.io.row_group_size * cfg.io.row_groups_per_file
    plat_ids = np.where(logs.platform >= 0, ads.ad_id[logs.platform.clip(min=0)], -1)
    counts = {}
    for split in SPLITS:
        lo, hi = split_days[split]
        idx = np.flatnonzero((ctx.day >= lo) & (ctx.day < hi))
        counts[split] = int(idx.size)
        folder = out / TABLES["requests"][0] / split
        folder.mkdir(parents=True, exist_ok=True)
        for part, start in enumerate(range(0, idx.size, per_file)):
            r = idx[start : start + per_file]
            table = io.make_table("requests", {
                "request_id": r.astype(np.int64),
                "day": ctx.day[r], "hour": ctx.hour[r], "user_id": users.user_id[ctx.user_row[r]],
                "geo_cell": ctx.cell[r], "loc_x": ctx.loc_x[r], "loc_y": ctx.loc_y[r],
                "candidate_set_id": set_id[r].astype(np.int32),
                "exposed_ids": io.fixed_list_array(ads.ad_id[logs.exposed[r]], pa.int64()),
                "exposed_creatives": io.fixed_list_array(logs.creative[r], pa.int32()),
                "exposed_prices": io.fixed_list_array(logs.price[r], pa.float32()),
                "clicks": io.fixed_list_array(logs.click[r], pa.int8()),
                "platform_ids": io.fixed_list_array(plat_ids[r], pa.int64(), logs.platform_len[r]),
                "platform_clicks": io.fixed_list_array(logs.platform_click[r], pa.int8(), logs.platform_len[r]),
            })
            io.write_table(table, folder / f"part-{part:05d}.parquet", "requests", row_group_size=cfg.io.row_group_size)
    return counts


# ----------------------------------------------------------------------------------------------
# world.json


def _stats(a: np.ndarray) -> dict:
    return {"min": int(a.min()), "median": float(np.median(a)), "mean": float(a.mean()), "max": int(a.max())}


def _world_meta(
    cfg: WorldPreset, seed: int, ads: Ads, organics: Organics, users: Users, shops, supply: SupplyStates,
    set_cells: np.ndarray, set_sizes: np.ndarray, set_id: np.ndarray, split_days: dict, per_split: dict,
) -> dict:
    g, cat, lg, uc = cfg.geo, cfg.catalog, cfg.logging, cfg.users
    n_cells = g.grid * g.grid
    return {
        "schema_version": SCHEMA_VERSION,
        "preset": cfg.name,
        "seed": int(seed),
        "K": lg.K,
        "max_behaviours": uc.max_behaviours,
        "max_creatives": cat.max_creatives,
        "sizes": {
            "ads": len(ads), "organics": len(organics), "users": len(users), "pois": int(len(shops.poi_id)),
            "candidate_sets": int(len(set_cells)), "requests": int(len(set_id)),
        },
        "vocab": {
            "category": cat.n_categories, "brand": cat.n_brands, "price_level": cat.n_price_levels + 1,
            "geo_cell": n_cells, "popularity_bucket": cat.n_popularity_buckets, "age_bucket": uc.n_age_buckets, "gender": len(uc.gender_probs),
            "home_cell": n_cells, "hour": HOURS, "creative": cat.max_creatives,
            "bhv_category": cat.n_categories, "bhv_brand": cat.n_brands, "bhv_price_level": cat.n_price_levels + 1,
            "bhv_geo_cell": n_cells, "bhv_hour": HOURS, "bhv_kind": 2,
        },
        "city": {
            "grid": g.grid, "city_size": g.city_size, "cell_size": g.city_size / g.grid, "radius": g.radius,
            "cells": "row-major: geo_cell = row * grid + col, col = floor(x / cell_size), row = floor(y / cell_size)",
        },
        "history_days": uc.history_days,
        "days": cfg.requests.n_days,
        "split_days": {s: list(v) for s, v in split_days.items()},
        "split_days_note": "absolute days, half-open [first, end); behaviours happen on days [0, history_days)",
        "row_group_size": cfg.io.row_group_size,
        "row_groups_per_file": cfg.io.row_groups_per_file,
        "requests_per_split": per_split,
        "candidates_per_request": _stats(set_sizes[set_id]),
        "candidate_sets": {
            **_stats(set_sizes),
            "count": int(len(set_cells)),
            "id_is_row": True,
            "for_all_cells": bool(g.sets_for_all_cells),
            "sets_per_row_group": cfg.io.sets_per_row_group,
            "id_layout": "candidate_set_id = cell index * states_per_cell + supply_state",
        },
        "supply": supply.to_json(),
        "logging_policy": {
            "recall_popular": lg.recall_popular, "recall_random": lg.recall_random, "prerank_keep": lg.prerank_keep,
            "platform_sample": lg.platform_sample, "platform_pop_exponent": lg.platform_pop_exponent,
            "observation_rate": lg.observation_rate, "reserve_price": lg.reserve_price,
        },
        "ids": "ids are sorted and sparse (not row numbers): map id -> row with a sorted search",
        "files": {name: TABLES[name][0] for name in TABLES},
    }
