"""Fixture of the tracking tests: one tiny pre-training fit through the `ega` CLI with an offline
W&B logger, its warnings and Lightning log lines recorded, in a scratch working directory."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

import pytest
import torch

from tracking_helpers import WANDB_HOME_VARS, WANDB_LOGGER_YAML, TrackedFit, ListHandler, fit_args


@pytest.fixture(scope="session")
def tracked_fit(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackedFit]:
    from egakit.lightning_cli import run_lightning_cli

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
    handler = ListHandler(result.log_lines)
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
