"""Learning-rate schedules of the training phases: constant (V1 §5.1.4, Adam at a fixed rate) or
linear warm-up then cosine decay.

Decaying the rate over the run is the usual way to make the last iterate less noisy than a
constant rate leaves it (Loshchilov & Hutter 2017). On the small world it did not change the
set-aware vs point-wise comparison of issue 5 (three seeds each, reports/v1/pretrain_experiments.json),
so the shipped configs keep the constant rate.

``factor(step)`` multiplies the base rate; ``step`` counts optimiser steps from 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["constant", "cosine"]


@dataclass(frozen=True)
class LRSchedule:
    """Shape of the learning rate over a run of ``total_steps`` optimiser steps.

    kind: ``"constant"`` (factor 1 throughout) or ``"cosine"``: linear warm-up from
        1/``warmup_steps`` to 1 over the first ``warmup_steps`` steps, then
        min_ratio + (1 − min_ratio)·½(1 + cos(π·t)) with t going from 0 to 1 at ``total_steps``
        (and staying at min_ratio after).
    warmup_steps: warm-up length (0: none).
    min_ratio: the final rate as a fraction of the base rate, in [0, 1].
    """

    kind: ScheduleKind = "constant"
    warmup_steps: int = 0
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "cosine"):
            raise ValueError(f"lr schedule kind must be 'constant' or 'cosine', got {self.kind!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")

    def factor(self, step: int, total_steps: int) -> float:
        """Multiplier of the base rate at optimiser step ``step`` (0-based) of ``total_steps``."""
        if self.kind == "constant":
            return 1.0
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        # a run no longer than its warm-up (a fast_dev_run) never reaches the decay
        t = min(1.0, (step - self.warmup_steps) / max(1, total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
