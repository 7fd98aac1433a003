"""The learning-rate schedules of the training phases (egakit.training.lr_schedule)."""
from __future__ import annotations

import math

import pytest

from egakit.training.lr_schedule import LRSchedule


def test_constant_is_one_everywhere():
    schedule = LRSchedule()
    assert [schedule.factor(step, 10) for step in (0, 5, 9, 50)] == [1.0, 1.0, 1.0, 1.0]


def test_cosine_warms_up_linearly_then_decays_to_the_floor():
    schedule = LRSchedule("cosine", warmup_steps=4, min_ratio=0.1)
    total = 24
    assert [schedule.factor(step, total) for step in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    decay = [schedule.factor(step, total) for step in range(4, total + 1)]
    assert decay[0] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in zip(decay, decay[1:]))
    assert schedule.factor(14, total) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way: cos(π/2) = 0
    assert decay[-1] == pytest.approx(0.1)
    assert schedule.factor(total + 100, total) == pytest.approx(0.1)


def test_cosine_without_warmup_starts_at_the_base_rate():
    schedule = LRSchedule("cosine", min_ratio=0.0)
    assert schedule.factor(0, 8) == 1.0
    assert schedule.factor(2, 8) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_a_run_shorter_than_its_warmup_only_warms_up():
    schedule = LRSchedule("cosine", warmup_steps=100, min_ratio=0.05)
    assert schedule.factor(0, 1) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kind": "linear"}, "kind"), ({"kind": "cosine", "warmup_steps": -1}, "warmup_steps"), ({"kind": "cosine", "min_ratio": 1.5}, "min_ratio")],
)
def test_bad_schedules_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LRSchedule(**kwargs)
