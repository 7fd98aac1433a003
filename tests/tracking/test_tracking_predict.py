"""`ega predict`: pCTR per candidate from a pre-training checkpoint (JSON lines), winners and
payments when the generator is trained, a clear refusal for an untrained encoder."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from egakit.checkpoint import GENERATOR
from egakit.cli import main

from tracking_helpers import TINY_PRETRAIN

PREDICT_BATCHES = 2


def test_predict_writes_pctr_per_candidate(tracked_fit, tmp_path, capsys):
    output = tmp_path / "predictions.jsonl"
    ckpt = tracked_fit.checkpoint_dir / "last.ckpt"
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert main(["predict", "-c", str(TINY_PRETRAIN), f"--data.init_args.world_dir={tracked_fit.world}",
                     f"--ckpt_path={ckpt}", f"--trainer.limit_predict_batches={PREDICT_BATCHES}",
                     "--trainer.callbacks+=egakit.callbacks.JsonLinesPredictionWriter",
                     f"--trainer.callbacks.output={output}"]) == 0
    finally:
        os.chdir(before)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    eval_batch_size = tracked_fit.cli.datamodule.eval_batch_size
    assert 0 < len(rows) <= PREDICT_BATCHES * eval_batch_size
    assert len({row["request_id"] for row in rows}) == len(rows), "a request predicted twice"
    for row in rows:
        assert set(row) == {"request_id", "candidate_ids", "pctr"}
        assert len(row["candidate_ids"]) == len(row["pctr"]) > 0
        assert all(0.0 < p < 1.0 for p in row["pctr"])
        assert all(ad_id >= 0 for ad_id in row["candidate_ids"]), "padding candidates leaked"
    assert f"predictions written to {output}" in capsys.readouterr().out


def _predict_batch(cli):
    loader = cli.datamodule.predict_dataloader()
    batch = next(iter(loader))
    return cli.datamodule.fill_features(batch)


def _module_from_checkpoint(tracked_fit):
    """The fit's module restored as `ega predict --ckpt_path` restores it (provenance included)."""
    return type(tracked_fit.cli.model).load_from_checkpoint(tracked_fit.checkpoint_dir / "last.ckpt",
                                                            map_location="cpu").eval()


def test_predict_step_gives_pctr_after_pretraining(tracked_fit):
    module = _module_from_checkpoint(tracked_fit)
    assert not module.allocates(), "a pre-training checkpoint has no trained generator"
    with torch.no_grad():
        out = module.predict_step(_predict_batch(tracked_fit.cli), 0)
    assert set(out) == {"request_id", "candidate_ids", "pctr"}


def test_predict_step_allocates_when_the_generator_is_trained(tracked_fit):
    module = _module_from_checkpoint(tracked_fit)
    module.trained_modules |= set(GENERATOR)  # critical-bid prices need the generator only
    assert module.allocates()
    with torch.no_grad():
        out = module.predict_step(_predict_batch(tracked_fit.cli), 0)
    assert set(out) == {"request_id", "winners", "payments"}
    K = module.num_slots
    for winners, payments in zip(out["winners"], out["payments"]):
        assert len(winners) == len(payments) == K
        assert len(set(winners)) == K, "an ad won two slots"
        assert all(p >= 0 for p in payments)


def test_predict_step_refuses_an_untrained_encoder(tracked_fit):
    module = _module_from_checkpoint(tracked_fit)
    module.trained_modules = set()  # as a module built from the config alone, without --ckpt_path
    with pytest.raises(RuntimeError, match="--ckpt_path"):
        module.predict_step(_predict_batch(tracked_fit.cli), 0)
