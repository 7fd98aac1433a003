"""Supply states (docs/design.md §1 as resolved in egakit.sim.supply): deterministic per set, thinning by
busy category, a floor on the set size, and clear errors for bad settings."""
from __future__ import annotations

import numpy as np
import pytest

from egakit.sim import get_preset
from egakit.sim.supply import SupplyConfig, SupplyStates

N_CATEGORIES = 10
CATEGORY = np.repeat(np.arange(N_CATEGORIES), 100)  # 1,000 ads, 100 per category
CELL_ROWS = np.arange(0, 1000, 2)  # every other ad is within the radius


def states(**config) -> SupplyStates:
    return SupplyStates(SupplyConfig(**{"states_per_cell": 4, "busy_share": 0.5, **config}), seed=3,
                        n_categories=N_CATEGORIES, min_available=6)


def test_rows_are_a_deterministic_sorted_subset_that_differs_between_sets():
    s = states()
    a, again, other = s.rows(CELL_ROWS, CATEGORY, 0), s.rows(CELL_ROWS, CATEGORY, 0), s.rows(CELL_ROWS, CATEGORY, 1)
    assert np.array_equal(a, again)
    assert not np.array_equal(a, other)
    assert np.all(np.isin(a, CELL_ROWS)) and np.all(np.diff(a) > 0)
    reseeded = SupplyStates(s.config, seed=4, n_categories=N_CATEGORIES, min_available=6)
    assert not np.array_equal(a, reseeded.rows(CELL_ROWS, CATEGORY, 0))


def test_thinning_is_by_category():
    """A category either keeps every ad (not busy) or about busy_availability of them."""
    s = states(busy_availability=0.1)
    shares = []
    for set_id in range(40):
        kept = s.rows(CELL_ROWS, CATEGORY, set_id)
        per_cat = np.bincount(CATEGORY[kept], minlength=N_CATEGORIES) / np.bincount(CATEGORY[CELL_ROWS])
        shares.append(per_cat)
    shares = np.concatenate(shares)
    full, thinned = shares[shares == 1.0], shares[shares < 1.0]
    assert full.size + thinned.size == shares.size
    assert thinned.mean() == pytest.approx(0.1, abs=0.03)
    assert thinned.size / shares.size == pytest.approx(0.5, abs=0.1)


def test_no_busy_share_keeps_the_radius_set_and_a_floor_keeps_tiny_sets():
    assert np.array_equal(states(busy_share=0.0).rows(CELL_ROWS, CATEGORY, 0), CELL_ROWS)
    everything_busy = SupplyStates(SupplyConfig(2, 1.0, 0.01), seed=0, n_categories=N_CATEGORIES, min_available=50)
    assert np.array_equal(everything_busy.rows(CELL_ROWS, CATEGORY, 0), CELL_ROWS)  # < 50 left: keep all
    assert everything_busy.rows(np.zeros(0, np.int64), CATEGORY, 0).size == 0


def test_json_round_trip():
    s = states()
    assert SupplyStates.from_json(s.to_json()) == s


@pytest.mark.parametrize("field,value", [("states_per_cell", 0), ("busy_share", 1.5), ("busy_availability", 0.0)])
def test_bad_settings_are_clear_errors(field, value):
    with pytest.raises(ValueError, match=f"supply.{field}"):
        get_preset("tiny", **{field: value})
