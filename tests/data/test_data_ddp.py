"""DDP over 2 CPU processes (gloo) × 2 loader workers: every rank gets its own requests, the same
number of batches (no hang), and together they read the split once (docs/design.md §12). Slow: it spawns
two Lightning processes."""
from __future__ import annotations

import json
from collections import Counter

import lightning.pytorch as pl
import pytest

import resume_job
from egakit.data.world import WorldDataModule
from egakit.sim.io import read_requests

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated", "ignore:.*__len__.*:UserWarning")

REQUESTS = 90
RANKS = 2
WORKERS = 2


@pytest.mark.slow
def test_ddp_two_ranks_read_disjoint_equal_shards(tiny_world, tmp_path):
    log = tmp_path / "consumed.jsonl"
    dm = WorldDataModule(
        str(tiny_world), batch_size=4, num_workers=WORKERS, neg_samples=8, splits={"train": f"pretrain[:{REQUESTS}]"}, seed=5
    )
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=RANKS, strategy="ddp_spawn", logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=0, limit_val_batches=0,
    )
    trainer.fit(resume_job.ConsumptionRecorder(log), datamodule=dm)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    per_rank = Counter(rec["rank"] for rec in records)
    assert sorted(per_rank) == list(range(RANKS)) and len(set(per_rank.values())) == 1  # equal batch counts
    ids = [r for rec in records for r in rec["request_ids"]]
    assert len(ids) == len(set(ids))  # one rank and one worker per request
    first = read_requests(tiny_world, "pretrain", columns=["request_id"])["request_id"].to_pylist()[:REQUESTS]
    assert set(ids) <= set(first) and len(ids) == REQUESTS - REQUESTS % RANKS  # last round's rest mod W dropped
