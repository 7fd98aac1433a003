"""Torch intra-op threads for the world's own CPU work.

The generator and ``world_stats`` run many small torch ops; on a shared 2-core machine OpenMP
threads spinning for a busy core made them ~100x slower (measured: 41 ms vs 0.3 ms per op with
2 vs 1 threads under load). They run with :data:`WORLD_THREADS` and restore the caller's setting.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

WORLD_THREADS = 1


@contextmanager
def torch_threads(n: int = WORLD_THREADS) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
