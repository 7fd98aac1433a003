"""Every baseline config trains one step through the `ega` LightningCLI (fast_dev_run), and a
saved stage checkpoint loads back (weights_only) into the same model."""
from pathlib import Path

import pytest
import torch

from egakit.baselines import load_stage_model
from egakit.lightning_cli import run_lightning_cli

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIGS = sorted((REPO / "configs" / "baselines" / "tiny").rglob("*.yaml"))


def test_there_are_tiny_baseline_configs():
    names = {str(p.relative_to(REPO / "configs" / "baselines" / "tiny")) for p in TINY_CONFIGS}
    assert {"mca/sasrec.yaml", "mca/dssm.yaml", "mca/din.yaml"} <= names
    assert {"fs_ltr/sasrec.yaml", "fs_ltr/dssm.yaml", "fs_ltr/din.yaml"} <= names


@pytest.mark.parametrize("config", TINY_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_fast_dev_run(config, tiny_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        [
            "fit", "-c", str(config),
            "--data.init_args.world_dir", str(tiny_world),
            "--trainer.fast_dev_run", "true",
            "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--model.init_args.teacher_ckpt", "null",  # the teacher path is exercised in tests/eval
        ]
    )
    assert cli.trainer.state.finished
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_checkpoint_round_trip(tiny_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        [
            "fit", "-c", str(REPO / "configs/baselines/tiny/mca/din.yaml"),
            "--data.init_args.world_dir", str(tiny_world),
            "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
        ]
    )
    path = tmp_path / "runs/baselines/tiny/mca/din/last.ckpt"
    loaded = load_stage_model(path, "rank")
    assert loaded.metadata["training"] == "mca" and loaded.metadata["world"]["preset"] == "tiny"
    dm = cli.datamodule
    batch = dm.fill_features(next(iter(dm.val_dataloader())))
    module = cli.model.eval()
    assert torch.allclose(loaded.model(batch), module.model(batch), atol=1e-6)
    with pytest.raises(Exception, match="expected the 'recall' stage"):
        load_stage_model(path, "recall")


def test_module_arguments_are_checked(tiny_world):
    from egakit.sim.io import load_world_meta
    from egakit.lit.baselines import DINModule, DSSMModule, SASRecModule

    vocab = load_world_meta(tiny_world)["vocab"]
    with pytest.raises(ValueError, match="vocab_sizes is None"):
        DSSMModule()
    with pytest.raises(ValueError, match="fs_ltr=true"):
        DSSMModule(vocab_sizes=vocab, teacher_ckpt="x.ckpt")
    with pytest.raises(ValueError, match="no later model stage"):
        DINModule(vocab_sizes=vocab, fs_ltr=True, teacher_ckpt="x.ckpt")
    with pytest.raises(ValueError, match="loss"):
        SASRecModule(vocab_sizes=vocab, loss="hinge")
    # a stage rebuilt from stored hyper-parameters (a dict) is the same model
    module = DINModule(vocab_sizes=vocab, model={"d": 8, "emb_dim": 4, "attention_hidden": [8], "mlp_hidden": [8]})
    assert module.model.config.d == 8 and module.cross_vocab_sizes == [7, 1200, 6]
