"""Supply states: which candidates within the radius can take an order right now (docs/design.md §1).

In a local-services marketplace not every shop within the radius is available at every moment:
a category runs busy (kitchens at capacity, couriers short) and most of its shops leave the
candidate set for a while. Each geo cell with a candidate set gets ``states_per_cell`` of them;
in each state a category is busy with probability ``busy_share``, and an ad of a busy category
stays available with probability ``busy_availability``. A request draws one state of its cell
uniformly (the generator's ``supply`` stream).

This is what gives the crowding term (:func:`egakit.sim.click_model.crowding`) a part that
varies *for the same ad* between requests: an ad's strong same-category rivals are in one request's
candidate set and out of the next one's, and only the set itself shows which. Without it every
request of a cell holds the same set, the crowding is a function of (ad, cell), and a point-wise
model learns it as well as a set-aware one.

The generator and the oracle both call :meth:`SupplyStates.rows`; it is deterministic from the world's
supply seed and the set id, so the oracle rebuilds any set without reading it from disk.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Mixed into the per-set seed so the supply draws never coincide with another stream's.
SUPPLY_TAG = 0x5355_5050  # "SUPP"


@dataclass(frozen=True)
class SupplyConfig:
    """Supply states of a world (a section of :class:`egakit.sim.presets.WorldPreset`)."""

    states_per_cell: int = 1  # candidate sets per geo cell; a request draws one uniformly
    busy_share: float = 0.0  # P(a category is busy in one state); 0: every ad always available
    busy_availability: float = 0.1  # P(an ad of a busy category is still available)

    def validate(self, preset: str) -> None:
        checks = [
            (self.states_per_cell >= 1, "supply.states_per_cell must be ≥ 1"),
            (0.0 <= self.busy_share <= 1.0, "supply.busy_share must be in [0, 1]"),
            (0.0 < self.busy_availability <= 1.0, "supply.busy_availability must be in (0, 1]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"preset {preset!r}: {msg}")


@dataclass(frozen=True)
class SupplyStates:
    """What rebuilds every candidate set of a world: the config, its seed, the category vocabulary
    and the smallest set a state may leave (written to ``world.json["supply"]``)."""

    config: SupplyConfig
    seed: int
    n_categories: int
    min_available: int  # a state that would leave fewer ads keeps the whole radius set

    def to_json(self) -> dict:
        return {**asdict(self.config), "seed": int(self.seed), "n_categories": int(self.n_categories),
                "min_available": int(self.min_available)}

    @classmethod
    def from_json(cls, obj: dict) -> "SupplyStates":
        names = ("states_per_cell", "busy_share", "busy_availability")
        return cls(SupplyConfig(**{k: obj[k] for k in names}), int(obj["seed"]), int(obj["n_categories"]),
                   int(obj["min_available"]))

    def rows(self, cell_rows: np.ndarray, category: np.ndarray, set_id: int) -> np.ndarray:
        """Available ad rows of candidate set ``set_id``.

        cell_rows: (n,) ascending ad rows within the radius of the set's cell; category: (n_ads,)
        category of every ad row. Returns (n',) ascending, a subset of ``cell_rows``.
        """
        cfg = self.config
        if cfg.busy_share <= 0.0 or cell_rows.size == 0:
            return cell_rows
        rng = np.random.default_rng([SUPPLY_TAG, int(self.seed), int(set_id)])
        busy = rng.random(self.n_categories) < cfg.busy_share
        stays = rng.random(cell_rows.size) < cfg.busy_availability
        keep = ~busy[category[cell_rows]] | stays
        if int(keep.sum()) < self.min_available:
            return cell_rows
        return cell_rows[keep]
