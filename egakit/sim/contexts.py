"""Request contexts (docs/design.md §1 "Requests: user, hour, location"): who asks, when and where.

A request picks a user ∝ activity, a day among the D request days (after the history days), an
hour from the city's activity profile and a location near the user's home (Gaussian,
``move_sd``). A location whose cell has too few candidates falls back to the user's home (homes
are always in usable cells). Requests are sorted by time; request_id is the position in that
order, so ids grow with time across the splits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egakit.sim.entities import HOURS, Users, hour_profile
from egakit.sim.geo import CityGrid
from egakit.sim.presets import RequestConfig, UserConfig
from egakit.sim.schema import SPLITS


@dataclass
class RequestContexts:
    day: np.ndarray  # (n,) int32 absolute day (history days come first)
    hour: np.ndarray  # (n,) int32
    user_row: np.ndarray  # (n,) int64
    loc_x: np.ndarray  # (n,) float32 km
    loc_y: np.ndarray  # (n,) float32
    cell: np.ndarray  # (n,) int32 geo cell of the location

    def __len__(self) -> int:
        return int(self.day.shape[0])

    @property
    def loc(self) -> np.ndarray:
        """(n, 2) float32."""
        return np.stack([self.loc_x, self.loc_y], axis=1)


def split_day_ranges(rcfg: RequestConfig, ucfg: UserConfig) -> dict[str, tuple[int, int]]:
    """Half-open absolute day ranges [first, end) of the splits, in order, each ≥ 1 day."""
    d = rcfg.n_days
    counts = [max(1, int(round(f * d))) for f in rcfg.split_fractions]
    while sum(counts) > d:  # rounding overshoot: take from the largest split
        counts[int(np.argmax(counts))] -= 1
    counts[0] += d - sum(counts)
    ranges, start = {}, ucfg.history_days
    for split, c in zip(SPLITS, counts):
        ranges[split] = (start, start + c)
        start += c
    return ranges


def make_request_contexts(
    rng: np.random.Generator, rcfg: RequestConfig, ucfg: UserConfig, grid: CityGrid, users: Users,
    usable_cell: np.ndarray,
) -> RequestContexts:
    n = rcfg.n_requests
    user = rng.choice(len(users), size=n, p=users.activity / users.activity.sum())
    day = ucfg.history_days + rng.integers(0, rcfg.n_days, size=n)
    hour = rng.choice(HOURS, size=n, p=hour_profile(rcfg))
    x = np.clip(users.home_x[user] + rng.normal(0.0, rcfg.move_sd, size=n), 0.0, grid.city_size).astype(np.float32)
    y = np.clip(users.home_y[user] + rng.normal(0.0, rcfg.move_sd, size=n), 0.0, grid.city_size).astype(np.float32)
    cell = grid.cell_of(x, y)
    away = ~usable_cell[cell]
    x[away], y[away], cell[away] = users.home_x[user[away]], users.home_y[user[away]], users.home_cell[user[away]]
    order = np.lexsort((rng.random(n), hour, day))
    return RequestContexts(
        day=day[order].astype(np.int32),
        hour=hour[order].astype(np.int32),
        user_row=user[order].astype(np.int64),
        loc_x=x[order],
        loc_y=y[order],
        cell=cell[order],
    )
