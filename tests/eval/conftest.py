"""Fixtures of the evaluation tests: one torch thread and tiny-trained systems (the tiny world is
the session-wide fixture of tests/conftest.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


REPO = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
#: Baseline stages in training order (each FS-LTR stage is taught by the one before it).
BASELINE_RUNS = ("mca/din", "mca/dssm", "mca/sasrec", "fs_ltr/din", "fs_ltr/dssm", "fs_ltr/sasrec")
EGA_PHASES = ("pretrain", "reward", "rlaf", "payment")
STEPS = "2"


@pytest.fixture(scope="session")
def trained(tiny_world, tmp_path_factory) -> Path:
    """A scratch directory where every tiny system is trained a few steps by its own config via the
    `ega` LightningCLI: the six cascade stages (configs/baselines/tiny, FS-LTR with its teachers)
    and the four EGA-V1 phases (configs/v1/tiny). Checkpoints land under its runs/."""
    from egakit.lightning_cli import run_lightning_cli

    work = tmp_path_factory.mktemp("eval_work")
    (work / "runs" / "worlds").mkdir(parents=True)
    (work / "runs" / "worlds" / "tiny").symlink_to(tiny_world)
    before = os.getcwd()
    os.chdir(work)
    try:
        for run in BASELINE_RUNS:
            run_lightning_cli(
                ["fit", "-c", str(REPO / "configs/baselines/tiny" / f"{run}.yaml"),
                 "--trainer.max_steps", STEPS, "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0", *QUIET]
            )
        for phase in EGA_PHASES:
            run_lightning_cli(["fit", "-c", str(REPO / "configs/v1/tiny" / f"{phase}.yaml"), "--trainer.limit_val_batches", "0", *QUIET])
    finally:
        os.chdir(before)
    return work
