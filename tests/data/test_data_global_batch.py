"""Two CPU processes (DDP, gloo) with batch b consume the same global batches as one process with
batch 2b, and end with the same weights and validation loss (deterministic mode). Slow: spawns
two Lightning processes."""
from __future__ import annotations

from collections import defaultdict

import pytest
import torch

import resume_job

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _global_steps(records: list[dict]) -> list[list[int]]:
    """Request ids of each global step (the union over ranks), in step order."""
    per_rank = defaultdict(list)
    for rec in records:
        per_rank[rec["rank"]].append(rec["request_ids"])
    steps = len(next(iter(per_rank.values())))
    assert all(len(v) == steps for v in per_rank.values())
    return [sorted(r for rank in sorted(per_rank) for r in per_rank[rank][step]) for step in range(steps)]


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tiny_world, tmp_path):
    one_w, one_val, one_rec = resume_job.run_global(str(tiny_world), tmp_path / "one", devices=1)
    two_w, two_val, two_rec = resume_job.run_global(str(tiny_world), tmp_path / "two", devices=2)
    assert {rec["rank"] for rec in two_rec} == {0, 1}
    assert _global_steps(two_rec) == _global_steps(one_rec)  # the same requests in every global step
    for name in one_w:
        torch.testing.assert_close(two_w[name], one_w[name], rtol=1e-5, atol=1e-6)
    assert two_val == pytest.approx(one_val, rel=1e-5)
