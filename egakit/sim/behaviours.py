"""Users' behaviour sequences (docs/design.md §1): past clicks on ads and organic items, with timestamps.

Each user clicks L_u ∈ [min_behaviours, max_behaviours] times during the history days
[0, history_days), before any logged request (so the remote store's sequence never leaks a label).
A click happens at an hour drawn from the city's activity profile, on an item drawn from a pool
of ``behaviour_pool`` items near the user's home with probability ∝ exp(ψ_u·φ + quality +
s_u·cross(hour, category) + g(distance from home)): the slot-free truth without position, list or
crowding terms, so the sequence reveals the user's interests and hour × category taste.

Vectorised per chunk of users of one home cell: an inverse-CDF search over the (user, hour) rows
of the pool's choice distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from egakit.sim.click_model import ClickTruth
from egakit.sim.entities import HOURS, Ads, Organics, Users, hour_profile
from egakit.sim.geo import PointIndex
from egakit.sim.presets import RequestConfig, UserConfig

KIND_AD = 0
KIND_ORGANIC = 1


@dataclass
class Behaviours:
    """Ragged sequences, user rows in order: user u's events are ``[offsets[u], offsets[u+1])``,
    oldest first."""

    offsets: np.ndarray  # (n_users + 1,) int64
    item_id: np.ndarray  # int64
    kind: np.ndarray  # int8: 0 ad, 1 organic
    ts: np.ndarray  # int64 hours since the world's start
    category: np.ndarray  # int32
    brand: np.ndarray
    price_level: np.ndarray
    geo_cell: np.ndarray
    hour: np.ndarray


def make_behaviours(
    rng: np.random.Generator, users: Users, ads: Ads, organics: Organics, ad_index: PointIndex,
    org_index: PointIndex, truth: ClickTruth, ucfg: UserConfig, rcfg: RequestConfig, progress: bool = False,
) -> Behaviours:
    n_ads = len(ads)
    item = {
        "latent": np.concatenate([ads.latent, organics.latent]),
        "quality": np.concatenate([ads.quality, organics.quality]),
        "category": np.concatenate([ads.category, organics.category]),
        "x": np.concatenate([ads.x, organics.x]).astype(np.float64),
        "y": np.concatenate([ads.y, organics.y]).astype(np.float64),
    }
    p = truth.params
    hour_p = hour_profile(rcfg)
    lengths = rng.integers(ucfg.min_behaviours, ucfg.max_behaviours + 1, size=len(users))

    chosen = np.empty(int(lengths.sum()), dtype=np.int64)  # item rows (ads first, then organics)
    ev_hour = np.empty_like(chosen)
    ev_user = np.empty_like(chosen)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    order = np.argsort(users.home_cell, kind="stable")
    cells, first = np.unique(users.home_cell[order], return_index=True)
    bounds = np.append(first, len(order))
    bar = tqdm(total=len(users), desc="behaviours", unit="user", disable=not progress, leave=False)
    for ci, cell in enumerate(cells):
        near = np.concatenate([ad_index.cell_set(int(cell)), n_ads + org_index.cell_set(int(cell))])
        members = order[bounds[ci] : bounds[ci + 1]]
        for lo in range(0, len(members), ucfg.user_chunk):
            us = members[lo : lo + ucfg.user_chunk]
            pool = near[rng.integers(0, len(near), size=(len(us), ucfg.behaviour_pool))]  # (U, P)
            base = np.einsum("ur,upr->up", users.interest[us].astype(np.float64), item["latent"][pool].astype(np.float64))
            dist = np.hypot(item["x"][pool] - users.home_x[us, None], item["y"][pool] - users.home_y[us, None])
            base += item["quality"][pool] - p.distance_weight * dist / truth.radius
            logits = base[:, None, :] + users.hour_sensitivity[us, None, None] * np.moveaxis(
                truth.cross[:, item["category"][pool]], 0, 1
            )  # (U, 24, P)
            logits -= logits.max(axis=2, keepdims=True)
            cdf = np.cumsum(np.exp(logits), axis=2)
            cdf /= cdf[:, :, -1:]
            n_rows, pool_size = len(us) * HOURS, ucfg.behaviour_pool
            flat = (cdf.reshape(n_rows, pool_size) + np.arange(n_rows)[:, None]).ravel()
            for j, u in enumerate(us):
                k = lengths[u]
                hours = rng.choice(HOURS, size=k, p=hour_p)
                row = j * HOURS + hours
                pos = np.searchsorted(flat, row + rng.random(k), side="right") - row * pool_size
                s = slice(starts[u], starts[u] + k)
                chosen[s] = pool[j, np.clip(pos, 0, pool_size - 1)]
                ev_hour[s] = hours
                ev_user[s] = u
            bar.update(len(us))
    bar.close()

    day = rng.integers(0, ucfg.history_days, size=chosen.shape[0])
    ts = day * HOURS + ev_hour
    perm = np.lexsort((ts, ev_user))  # by user row, then oldest first
    chosen, ts, ev_hour = chosen[perm], ts[perm], ev_hour[perm]
    is_org = chosen >= n_ads
    org_row = np.where(is_org, chosen - n_ads, 0)
    ad_row = np.where(is_org, 0, chosen)

    def pick(ad_field: np.ndarray, org_field: np.ndarray) -> np.ndarray:
        return np.where(is_org, org_field[org_row], ad_field[ad_row])

    return Behaviours(
        offsets=starts.astype(np.int64),
        item_id=pick(ads.ad_id, organics.item_id).astype(np.int64),
        kind=is_org.astype(np.int8),
        ts=ts.astype(np.int64),
        category=pick(ads.category, organics.category).astype(np.int32),
        brand=pick(ads.brand, organics.brand).astype(np.int32),
        price_level=pick(ads.price_level, organics.price_level).astype(np.int32),
        geo_cell=pick(ads.geo_cell, organics.geo_cell).astype(np.int32),
        hour=ev_hour.astype(np.int32),
    )
