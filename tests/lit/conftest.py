"""Fixtures of the training-phase tests: one tiny world per session, the four tiny phases chained
once per session (their checkpoints), one torch thread per test."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from egakit.lightning_cli import run_lightning_cli
from egakit.sim import generate_world
from lit_helpers import CHAIN_STEPS, PHASES, phase_args, working_directory


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def lit_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lit_world") / "tiny"
    generate_world("tiny", out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def chain(lit_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four tiny phases trained CHAIN_STEPS steps each, each from the previous checkpoint
    (the configs' relative init_from paths, resolved in a scratch working directory)."""
    workdir = tmp_path_factory.mktemp("lit_chain")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with working_directory(workdir):
            for phase in PHASES:
                run_lightning_cli(
                    phase_args(phase, lit_world, f"--trainer.max_steps={CHAIN_STEPS}", "--trainer.limit_val_batches=0")
                )
    finally:
        torch.set_num_threads(threads)
    ckpts = {phase: workdir / "runs" / "tiny" / "ckpt" / phase / "last.ckpt" for phase in PHASES}
    for phase, path in ckpts.items():
        assert path.is_file(), f"the {phase} phase wrote no checkpoint at {path}"
    return ckpts
