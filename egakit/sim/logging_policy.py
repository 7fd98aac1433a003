"""The noisy cascade logging policy (docs/design.md §1 "Logs"; the MCA of V1 §1 / Fig. 1).

For the requests that share one candidate set (one geo cell), vectorised over those requests:

1. recall: the top ``recall_popular`` candidates by popularity plus ``recall_random`` uniformly
   random others;
2. pre-rank: a noisy slot-free CTR estimate (true logit + N(0, prerank_noise)), keep
   ``prerank_keep``;
3. rank: a less noisy estimate (true logit + N(0, rank_noise));
4. GSP on estimated CTR × bid: the top K in slot order, each paying the next score divided by its
   own estimated CTR (never above its bid, never below the reserve price);
5. the shown creative is uniform over the ad's creatives; clicks are sampled from the truth of
   the whole list (position bias, in-list externality, shown creative).

Platform labels (V1 §4.1 "clicks from other entries"): a popularity sample (∝ popularity^α,
without replacement, Gumbel top-k) of unexposed candidates gets a click drawn from the slot-free
truth (posbias 1, no list externality, random creative), thinned by ``observation_rate``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egakit.sim.click_model import TruthTables
from egakit.sim.entities import Ads
from egakit.sim.presets import LoggingConfig


@dataclass
class LoggedRequests:
    """Outputs for r requests of one candidate set (ad *rows*, not ids)."""

    exposed: np.ndarray  # (r, K) int64 ad rows in slot order
    creative: np.ndarray  # (r, K) int32 shown creative
    price: np.ndarray  # (r, K) float32 per-click price
    click: np.ndarray  # (r, K) int8
    platform: np.ndarray  # (r, P) int64 ad rows, P = min(platform_sample, n_set - K)
    platform_click: np.ndarray  # (r, P) int8


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def run_cascade(
    rng: np.random.Generator,
    tt: TruthTables,
    ads: Ads,
    set_rows: np.ndarray,
    crowd: np.ndarray,
    user_rows: np.ndarray,
    hour: np.ndarray,
    loc: np.ndarray,
    cfg: LoggingConfig,
) -> LoggedRequests:
    """Run the cascade for ``r`` requests sharing one candidate set.

    set_rows: (n,) sorted ad rows of the set; crowd: (n,) its crowding; user_rows, hour: (r,);
    loc: (r, 2) float32 request locations (as stored).
    """
    n, r, K = len(set_rows), len(user_rows), cfg.K
    u_t, h_t, loc_t = _t(user_rows.astype(np.int64)), _t(hour.astype(np.int64)), _t(loc.astype(np.float32))
    pop = ads.popularity[set_rows].astype(np.float64)

    # 1. recall (set-local positions)
    if n <= cfg.recall_popular + cfg.recall_random:
        recall = np.broadcast_to(np.arange(n), (r, n))
    else:
        top = np.argsort(-pop, kind="stable")[: cfg.recall_popular]
        rest = np.setdiff1d(np.arange(n), top, assume_unique=True)
        keys = rng.random((r, len(rest)))
        pick = np.argpartition(keys, len(rest) - cfg.recall_random, axis=1)[:, -cfg.recall_random :]
        recall = np.concatenate([np.broadcast_to(top, (r, len(top))), rest[pick]], axis=1)
    rows = set_rows[recall]
    with torch.no_grad():
        z = tt.slot_free_logit(u_t, h_t, loc_t, _t(rows), _t(crowd[recall])).double().numpy()

    # 2. pre-rank: keep the best noisy estimates
    keep = min(cfg.prerank_keep, recall.shape[1])
    pre = z + rng.normal(0.0, cfg.prerank_noise, size=z.shape)
    kept = np.argpartition(-pre, keep - 1, axis=1)[:, :keep]  # positions in recall

    # 3. rank + 4. GSP on estimated CTR × bid
    est_ctr = _sigmoid(np.take_along_axis(z, kept, 1) + rng.normal(0.0, cfg.rank_noise, size=kept.shape))
    kept_rows = np.take_along_axis(rows, kept, 1)
    bid = ads.bid[kept_rows].astype(np.float64)
    score = est_ctr * bid
    order = np.argsort(-score, axis=1, kind="stable")[:, : K + 1]
    win = np.take_along_axis(kept, order[:, :K], 1)
    exposed = np.take_along_axis(rows, win, 1)
    next_score = np.take_along_axis(score, order[:, 1 : K + 1], 1)  # keep ≥ K + 1 (preset check)
    own_ctr = np.take_along_axis(est_ctr, order[:, :K], 1)
    own_bid = np.take_along_axis(bid, order[:, :K], 1)
    price = np.minimum(np.maximum(next_score / own_ctr, cfg.reserve_price), own_bid)

    # 5. creatives and clicks from the truth of the list
    creative = np.floor(rng.random((r, K)) * ads.n_creatives[exposed]).astype(np.int64)
    win_local = np.take_along_axis(recall, win, 1)
    with torch.no_grad():
        ctr = tt.list_ctr(
            u_t, h_t, loc_t, _t(exposed), _t(crowd[win_local]), torch.ones(r, K, dtype=torch.bool), _t(creative)
        ).double().numpy()
    click = rng.random((r, K)) < ctr

    # platform labels on a popularity sample of the unexposed candidates
    n_plat = min(cfg.platform_sample, n - K)
    keys = cfg.platform_pop_exponent * np.log(pop)[None, :] + rng.gumbel(size=(r, n))
    np.put_along_axis(keys, win_local, -np.inf, axis=1)
    plat = np.argpartition(-keys, n_plat - 1, axis=1)[:, :n_plat]
    plat = np.take_along_axis(plat, np.argsort(-np.take_along_axis(keys, plat, 1), axis=1, kind="stable"), 1)
    plat_rows = set_rows[plat]
    with torch.no_grad():
        pctr = tt.slot_free_ctr(u_t, h_t, loc_t, _t(plat_rows), _t(crowd[plat])).double().numpy()
    plat_click = (rng.random(pctr.shape) < pctr) & (rng.random(pctr.shape) < cfg.observation_rate)

    return LoggedRequests(
        exposed=exposed.astype(np.int64),
        creative=creative.astype(np.int32),
        price=price.astype(np.float32),
        click=click.astype(np.int8),
        platform=plat_rows.astype(np.int64),
        platform_click=plat_click.astype(np.int8),
    )
