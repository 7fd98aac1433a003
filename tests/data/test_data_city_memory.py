"""City scale (up to 10^5 candidates per request), full mode: the split is streamed, so peak memory
is the stores plus the batches in flight and does not grow with the number of requests read.

Slow: generating the city world takes minutes. Each measurement runs in a fresh process
(ru_maxrss is a high-water mark: the generator's own peak must not count)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from egakit.sim import generate_world

ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZE = 8
BYTES_PER_CANDIDATE = 128  # sample arrays + padded batch tensors + gathered features, with room to spare
PREFETCH_FACTOR = 2  # torch's default: batches each worker keeps ready

MEASURE = r"""
import json, resource, sys
sys.path.insert(0, {root!r})
from egakit.data.world import WorldDataModule

def peak_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024

dm = WorldDataModule({world!r}, batch_size={bs}, num_workers={workers}, eval_mode="full", splits={{"test": {split!r}}})
dm.setup("test")
after_setup = peak_mb()
requests = max_n = candidates = 0
for batch in dm.test_dataloader():
    batch = dm.on_after_batch_transfer(batch, 0)
    requests += batch.batch_size
    candidates += int(batch.cand_mask.sum())
    max_n = max(max_n, batch.num_candidates)
print(json.dumps({{"after_setup": after_setup, "peak": peak_mb(), "worker_peak": peak_mb(resource.RUSAGE_CHILDREN),
                  "requests": requests, "candidates": candidates, "max_n": max_n}}))
"""


@pytest.fixture(scope="module")
def city_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("city") / "city"
    generate_world("city", out, seed=0, progress=False)
    return out


def _measure(world: Path, split: str, workers: int) -> dict:
    code = MEASURE.format(root=str(ROOT), world=str(world), bs=BATCH_SIZE, workers=workers, split=split)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_city_full_mode_memory_is_the_batches_in_flight(city_world, workers):
    got = _measure(city_world, "test", workers)
    print(f"workers={workers}: {got}")
    assert got["max_n"] > 50_000 and got["requests"] > 100
    growth_mb = got["peak"] - got["after_setup"]
    in_flight = 2 + PREFETCH_FACTOR * workers  # batches the main process can hold at once
    assert growth_mb < in_flight * BATCH_SIZE * got["max_n"] * BYTES_PER_CANDIDATE / 2**20
    assert growth_mb < got["candidates"] * BYTES_PER_CANDIDATE / 2**20 / 4  # far from the whole split
