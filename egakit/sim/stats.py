"""Summary of a world and the measured size of each effect of its truth (the demo prints this).

``world_stats(world_dir)`` returns requests per split, candidates per request, logged CTR by
slot, and, measured with the oracle on a sample of test requests over their full candidate sets,
the effect of each term of the click model (docs/design.md §1) as a relative CTR change:

- ``position_bias``: posbias(k) of the truth and the logged CTR by slot;
- ``list_externality``: CTR of the ad in slot 2 when the most similar candidate is in slot 1,
  relative to the least similar one;
- ``crowding``: CTR with the crowding term relative to without it, for the most and the least
  crowded tenth of candidates, and how much of the term is *set-dependent*: its standard
  deviation within each ad (across the sampled requests that hold the ad; ``set_dependent_std``,
  logit units; an ad held by one sampled request adds 0, so small samples under-state it)
  next to its overall one (``std``), and that within-ad variance as a share of the
  within-request variance of the whole logit (``set_dependent_share_of_logit_var``). Only this
  part needs the set: the rest is a function of the ad alone, which a point-wise model with
  ad identity can learn;
- ``hour_x_category``: CTR at the category's best hour relative to its worst, for the user;
- ``distance``: CTR at distance 0 relative to distance = radius;
- ``creative``: CTR with the best creative relative to the worst (ads with ≥ 2 creatives);
- ``interest``: mean CTR of the top tenth by ψ·φ relative to the bottom tenth;
- ``truth_vs_logs``: the oracle's mean CTR of the logged lists next to the logged click rate.

Effects other than ``creative`` are measured on the logit without the creative term.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import torch

from egakit.sim import io
from egakit.sim.fingerprint import world_fingerprint
from egakit.sim.click_model import posbias
from egakit.sim.oracle import Oracle
from egakit.sim.schema import SPLITS
from egakit.sim.threads import torch_threads

DEFAULT_SAMPLE = 128  # test requests on which the effects are measured ...
CANDIDATE_BUDGET = 1_000_000  # ... at most about this many candidates in all (city: ~20 requests)
CANDIDATES_PER_CHUNK = 200_000  # bound on B · N in one oracle call
DECILE = 0.1


def world_stats(
    world_dir,
    *,
    n_requests: int = DEFAULT_SAMPLE,
    candidate_budget: int = CANDIDATE_BUDGET,
    seed: int = 0,
    oracle: Optional[Oracle] = None,
) -> dict:
    """Statistics of the world in ``world_dir`` (see the module doc). Deterministic in ``seed``.

    The effects are measured on ``n_requests`` random test requests, fewer when their full
    candidate sets would exceed about ``candidate_budget`` candidates in all.
    """
    world_dir = Path(world_dir)
    meta = io.load_world_meta(world_dir)
    oracle = oracle or Oracle.from_world(world_dir)
    K = int(meta["K"])
    logged = _logged(world_dir, K)
    test = io.read_requests(world_dir, "test")
    rng = np.random.default_rng(seed)
    affordable = max(1, int(candidate_budget // meta["candidates_per_request"]["mean"]))
    pick = np.sort(rng.choice(test.num_rows, size=min(n_requests, affordable, test.num_rows), replace=False))
    sample = test.take(pa.array(pick))
    p = oracle.truth.params
    return {
        "preset": meta["preset"],
        "seed": meta["seed"],
        "fingerprint": world_fingerprint(world_dir),
        "sizes": meta["sizes"],
        "requests_per_split": logged["requests_per_split"],
        "candidates_per_request": meta["candidates_per_request"],
        "logged": {k: v for k, v in logged.items() if k != "requests_per_split"},
        "effects": {
            "position_bias": {
                "truth": posbias(p.posbias_decay, K).tolist(),
                "logged_ctr_by_slot": logged["ctr_by_slot"],
            },
            **_effects(oracle, sample, K),
        },
        "sampled_test_requests": int(len(pick)),
    }


def _logged(world_dir: Path, K: int) -> dict:
    clicks, plat, per_split = [], [], {}
    for split in SPLITS:
        t = io.read_requests(world_dir, split, ["clicks", "platform_clicks"])
        per_split[split] = t.num_rows
        clicks.append(_matrix(t, "clicks", K))
        plat.append(t.column("platform_clicks").combine_chunks().flatten().to_numpy())
    c = np.concatenate(clicks).astype(np.float64)
    pl = np.concatenate(plat).astype(np.float64)
    return {
        "requests_per_split": per_split,
        "ctr_per_exposure": float(c.mean()),
        "ctr_by_slot": c.mean(axis=0).tolist(),
        "platform_label_rate": float(pl.mean()) if pl.size else 0.0,
        "exposures": int(c.size),
    }


def _effects(oracle: Oracle, sample: pa.Table, K: int) -> dict:
    ctx_all = oracle.context_from_requests(sample)
    exposed = torch.from_numpy(_matrix(sample, "exposed_ids", K).astype(np.int64))
    creatives = torch.from_numpy(_matrix(sample, "exposed_creatives", K).astype(np.int64))
    clicks = _matrix(sample, "clicks", K)
    p = oracle.truth.params
    acc: dict[str, list] = {k: [] for k in ("crowd", "crowd_rel", "crowd_term", "crowd_row", "hour_rel", "dist_rel",
                                            "creative_rel", "interest", "ctr", "ext_sim", "ext_dis")}
    logit_var: list[torch.Tensor] = []
    n = len(ctx_all)
    start = 0
    while start < n:
        sizes, stop = 0, start
        while stop < n and (stop == start or sizes + _set_size(oracle, ctx_all, stop) <= CANDIDATES_PER_CHUNK):
            sizes += _set_size(oracle, ctx_all, stop)
            stop += 1
        idx = torch.arange(start, stop)
        ctx = ctx_all.select(idx)
        ids = _full_sets(oracle, ctx)
        t = oracle.terms(ctx, ids)
        valid = t["valid"]
        z = p.c0 + t["interest"] + t["quality"] + t["cross"] + t["distance"] + t["crowding"]
        tab = oracle.tables
        rows = t["rows"]
        s_u = tab.sensitivity[ctx.user_rows].unsqueeze(1)
        cross_cat = tab.cross[:, tab.category[rows]]  # (24, B, N)
        z_nocross = z - t["cross"]
        hour_best = torch.sigmoid(z_nocross + s_u * cross_cat.max(0).values)
        hour_worst = torch.sigmoid(z_nocross + s_u * cross_cat.min(0).values)
        z_nodist = z - t["distance"]
        near = torch.sigmoid(z_nodist)
        far = torch.sigmoid(z_nodist - p.distance_weight)
        attr, cnt = tab.creative_attr[rows], tab.creative_count[rows]
        c_mask = torch.arange(attr.shape[-1], device=attr.device) < cnt.unsqueeze(-1)
        best = torch.sigmoid(z + attr.masked_fill(~c_mask, -np.inf).max(-1).values)
        worst = torch.sigmoid(z + attr.masked_fill(~c_mask, np.inf).min(-1).values)
        multi = valid & (cnt >= 2)
        crowd_raw = -t["crowding"] / p.lambda_set if p.lambda_set else t["crowding"]
        acc["crowd"].append(crowd_raw[valid])
        acc["crowd_rel"].append((torch.sigmoid(z) / torch.sigmoid(z - t["crowding"]) - 1.0)[valid])
        acc["crowd_term"].append(t["crowding"][valid])
        acc["crowd_row"].append(rows[valid])
        logit_var.append(_masked_var(z.double(), valid))
        acc["hour_rel"].append((hour_best / hour_worst - 1.0)[valid])
        acc["dist_rel"].append((near / far - 1.0)[valid])
        acc["creative_rel"].append((best / worst - 1.0)[multi])
        acc["interest"].append(t["interest"][valid])
        acc["ctr"].append(torch.sigmoid(z)[valid])
        sim, dis = _externality(oracle, ctx, ids, valid, exposed[idx])
        acc["ext_sim"].append(sim)
        acc["ext_dis"].append(dis)
        start = stop
    cat = {k: torch.cat(v).double() for k, v in acc.items()}
    set_std = _within_group_std(cat["crowd_term"], torch.cat(acc["crowd_row"]))
    crowd_order = torch.argsort(cat["crowd"])
    tenth = max(1, int(DECILE * len(crowd_order)))
    int_order = torch.argsort(cat["interest"])
    logged_truth = oracle.list_ctr(ctx_all, exposed, creatives)
    return {
        "list_externality": {
            "similar_above_vs_dissimilar_above_rel_ctr": float(cat["ext_sim"].mean() / cat["ext_dis"].mean() - 1.0),
        },
        "crowding": {
            "most_crowded_tenth_rel_ctr": float(cat["crowd_rel"][crowd_order[-tenth:]].mean()),
            "least_crowded_tenth_rel_ctr": float(cat["crowd_rel"][crowd_order[:tenth]].mean()),
            "mean_crowding": float(cat["crowd"].mean()),
            "std": float(cat["crowd_term"].std()),
            "set_dependent_std": set_std,
            "set_dependent_share_of_logit_var": set_std**2 / float(torch.cat(logit_var).mean()),
        },
        "hour_x_category": {"best_vs_worst_hour_rel_ctr": float(cat["hour_rel"].mean())},
        "distance": {"near_vs_radius_rel_ctr": float(cat["dist_rel"].mean())},
        "creative": {"best_vs_worst_creative_rel_ctr": float(cat["creative_rel"].mean()) if len(cat["creative_rel"]) else 0.0},
        "interest": {
            "top_vs_bottom_tenth_rel_ctr": float(
                cat["ctr"][int_order[-tenth:]].mean() / cat["ctr"][int_order[:tenth]].mean() - 1.0
            ),
        },
        "truth_vs_logs": {
            "oracle_ctr_of_logged_lists": float(logged_truth.double().mean()),
            "logged_click_rate": float(clicks.mean()),
            "oracle_ctr_by_slot": logged_truth.double().mean(0).tolist(),
        },
        "slot_free_ctr_mean_over_candidates": float(cat["ctr"].mean()),
    }


def _masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) variance of each row of ``x`` (B, N) over its ``mask``ed entries."""
    n = mask.sum(1).clamp_min(1)
    mean = torch.where(mask, x, 0.0).sum(1) / n
    return torch.where(mask, (x - mean.unsqueeze(1)) ** 2, 0.0).sum(1) / n


def _within_group_std(x: torch.Tensor, group: torch.Tensor) -> float:
    """Root mean square of ``x`` around its mean within each ``group`` (both (n,)): the part of
    ``x`` that the group does not determine."""
    _, inv = torch.unique(group, return_inverse=True)
    count = torch.bincount(inv).double()
    mean = torch.bincount(inv, weights=x) / count
    return float(((x - mean[inv]) ** 2).mean().sqrt())


def _matrix(table: pa.Table, name: str, K: int) -> np.ndarray:
    """A list column of K values per row -> (rows, K) numpy array (a writable copy)."""
    return np.array(table.column(name).combine_chunks().flatten().to_numpy()).reshape(-1, K)


def _set_size(oracle: Oracle, ctx, i: int) -> int:
    return int(oracle.candidate_set(int(ctx.set_ids[i]))[0].shape[0])


def _full_sets(oracle: Oracle, ctx) -> torch.Tensor:
    """(B, N_max) ad ids of each request's full candidate set, −1 padded."""
    sets = [oracle.candidate_set_ids(int(s)) for s in ctx.set_ids.tolist()]
    n_max = max(len(s) for s in sets)
    ids = torch.full((len(sets), n_max), -1, dtype=torch.int64, device=oracle.device)
    for b, s in enumerate(sets):
        ids[b, : len(s)] = s
    return ids


def _externality(oracle: Oracle, ctx, ids: torch.Tensor, valid: torch.Tensor, exposed: torch.Tensor):
    """CTR of the logged slot-2 ad j with, in slot 1, the candidate most similar to j vs the least
    similar (cosine of latents). Returns the two (B,) CTR vectors."""
    tab = oracle.tables
    j = exposed[:, 1]
    j_rows, _ = oracle.ad_rows(j)
    rows, _ = oracle.ad_rows(ids)
    unit = tab.latent / tab.latent.norm(dim=-1, keepdim=True)
    cos = (unit[rows] * unit[j_rows].unsqueeze(1)).sum(-1)
    mask = valid & (ids != j.unsqueeze(1))
    most = torch.where(mask, cos, torch.full_like(cos, -np.inf)).argmax(1)
    least = torch.where(mask, cos, torch.full_like(cos, np.inf)).argmin(1)
    pick = lambda pos: ids.gather(1, pos.unsqueeze(1)).squeeze(1)  # noqa: E731
    sim = oracle.list_ctr(ctx, torch.stack([pick(most), j], 1))[:, 1]
    dis = oracle.list_ctr(ctx, torch.stack([pick(least), j], 1))[:, 1]
    return sim, dis
