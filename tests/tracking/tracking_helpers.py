"""Helpers of the tracking tests: the tracked fit's arguments and record, W&B's folders."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def fit_args(world: Path, logger_yaml: Path) -> list[str]:
    return ["fit", "-c", str(TINY_PRETRAIN), "-c", str(logger_yaml), f"--data.init_args.world_dir={world}",
            f"--trainer.max_steps={FIT_STEPS}", f"--trainer.val_check_interval={VAL_EVERY}"]


