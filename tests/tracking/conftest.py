"""Fixture of the tracking tests: one tiny pre-training fit through the `ega` CLI with an offline
W&B logger, its warnings and Lightning log lines recorded, in a scratch working directory."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY_PRETRAIN = REPO / "configs" / "v1" / "tiny" / "pretrain.yaml"
#: Steps of the tracked fit, and how often it validates (so the card has validation metrics).
FIT_STEPS = 4
VAL_EVERY = 2
WANDB_LOGGER_YAML = """\
trainer:
  logger:
    class_path: lightning.pytorch.loggers.WandbLogger
    init_args:
      project: egakit
      save_dir: runs
      offline: true
"""
#: W&B's own folders (settings, artifact staging and cache) go under the scratch directory.
WANDB_HOME_VARS = ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR")


@dataclass
class TrackedFit:
    workdir: Path
    world: Path
    cli: Any
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)

    @property
    def wandb_run_dir(self) -> Path:
        runs = sorted((self.workdir / "runs" / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"expected one offline run, found {runs}"
        return runs[0]

    @property
    def checkpoint_dir(self) -> Path:
        return self.workdir / "runs" / "tiny" / "ckpt" / "pretrain"


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def fit_args(world: Path, logger_yaml: Path) -> list[str]:
    return ["fit", "-c", str(TINY_PRETRAIN), "-c", str(logger_yaml), f"--data.init_args.world_dir={world}",
            f"--trainer.max_steps={FIT_STEPS}", f"--trainer.val_check_interval={VAL_EVERY}"]


@pytest.fixture(scope="session")
def tracked_fit(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackedFit]:
    from egakit.cli import run_lightning_cli

    workdir = tmp_path_factory.mktemp("tracked_fit")
    logger_yaml = workdir / "wandb_logger.yaml"
    logger_yaml.write_text(WANDB_LOGGER_YAML)
    saved_env = {name: os.environ.get(name) for name in (*WANDB_HOME_VARS, "WANDB_MODE")}
    for name in WANDB_HOME_VARS:
        os.environ[name] = str(workdir / "wandb_home")
    os.environ["WANDB_MODE"] = "offline"
    before_cwd, before_argv, threads = Path.cwd(), sys.argv, torch.get_num_threads()
    args = fit_args(tiny_world, logger_yaml)
    result = TrackedFit(workdir=workdir, world=tiny_world, cli=None)
    handler = _ListHandler(result.log_lines)
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero_log.addHandler(handler)
    os.chdir(workdir)
    sys.argv = ["ega", *args]  # as the console script sees it: `ega` passes sys.argv[1:] on
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result.cli = run_lightning_cli(args)
        result.warnings = list(caught)
        import wandb

        wandb.teardown()  # the W&B service writes the transaction log out (as at process exit)
        yield result
    finally:
        rank_zero_log.removeHandler(handler)
        os.chdir(before_cwd)
        sys.argv = before_argv
        torch.set_num_threads(threads)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
