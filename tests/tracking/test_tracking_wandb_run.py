"""A tiny `ega fit` with an offline W&B logger: the run read back from its transaction log holds
the resolved config, name/group/job_type, metrics and the checkpoint artifact; the config lives in
the run's own directory; MODEL_CARD.md sits beside the checkpoint; no self-inflicted warnings."""
from __future__ import annotations

import yaml

from egakit.tracking import WANDB_CONFIG_FILENAME, WANDB_CONFIG_KEY, read_offline_run, run_identity


def test_run_identity_from_config_path(tmp_path):
    assert run_identity("fit", "configs/v1/tiny/pretrain.yaml") == {"name": "pretrain", "group": "v1-tiny", "job_type": "fit"}
    assert run_identity("test", tmp_path / "exp" / "mine.yaml") == {"name": "mine", "group": "exp", "job_type": "test"}
    assert run_identity("perf", None, default_name="perf")["group"] == "default"


def test_offline_run_has_identity_config_and_metrics(tracked_fit):
    run = read_offline_run(tracked_fit.wandb_run_dir)
    assert (run["name"], run["group"], run["job_type"], run["project"]) == ("pretrain", "v1-tiny", "fit", "egakit")
    config = run["config"][WANDB_CONFIG_KEY]
    for section in ("model", "data", "trainer", "seed_everything"):
        assert section in config, f"W&B config lacks {section}"
    assert config["seed_everything"] == 0
    assert config["model"]["class_path"] == "egakit.lit.pretrain.PretrainModule"
    # the world-linked sizes reach the module through link_arguments at instantiation: they are in
    # the module's own hyper-parameters, which Lightning logs at the top level of the run's config
    assert run["config"]["vocab_sizes"] and run["config"]["num_slots"] == 5
    assert config["data"]["init_args"]["world_dir"] == str(tracked_fit.world)
    assert config["trainer"]["max_steps"] == 4
    assert "val/auc" in run["summary"] and "train/loss_epoch" in run["summary"]


def test_offline_run_has_the_checkpoint_artifact_with_its_card(tracked_fit):
    run = read_offline_run(tracked_fit.wandb_run_dir)
    models = [a for a in run["artifacts"] if a["type"] == "model"]
    assert len(models) == 1
    artifact = models[0]
    assert artifact["name"] == "pretrain-model"
    assert set(artifact["files"]) == {"last.ckpt", "MODEL_CARD.md"}
    assert "latest" in artifact["aliases"]
    assert artifact["metadata"]["phase"] == "pretrain"
    assert "val/auc" in artifact["metadata"]["val_metrics"]


def test_resolved_config_is_in_the_run_directory_not_shared(tracked_fit):
    saved = tracked_fit.wandb_run_dir / "files" / WANDB_CONFIG_FILENAME
    assert saved.is_file()
    config = yaml.safe_load(saved.read_text())
    assert config["model"]["class_path"] == "egakit.lit.pretrain.PretrainModule"
    assert not (tracked_fit.workdir / "runs" / "config.yaml").exists(), "one shared runs/config.yaml again"


def test_model_card_beside_the_checkpoint(tracked_fit):
    card = (tracked_fit.checkpoint_dir / "MODEL_CARD.md").read_text()
    metrics = tracked_fit.cli.trainer.callback_metrics
    assert "## Metrics (last validation)" in card
    assert f"| val/auc | {float(metrics['val/auc']):.6g} |" in card
    for needle in ("preset: tiny", "requests_per_split", "## Intended use", "## Limitations", "max_steps: 4",
                   "egakit version: 0.1.0", "git commit: "):
        assert needle in card, needle
    assert "git commit: unknown" not in card  # the tests run from a git checkout


def test_fit_prints_no_self_inflicted_warnings(tracked_fit):
    messages = [str(w.message) for w in tracked_fit.warnings]
    for known in ("args parameter is intended", "set_vital", "LeafSpec", "IterableDataset` has `__len__`",
                  "in eval mode at the start of training"):
        assert not any(known in m for m in messages), f"warning still printed: {known}"
    assert not any("litlogger" in line for line in tracked_fit.log_lines)
    assert any("GPU available" in line for line in tracked_fit.log_lines), "Lightning's other info lines still pass"
