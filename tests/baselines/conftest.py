"""Fixtures of the baseline tests: the tiny world (generated once per session, shared with
tests/eval through the session's base temp directory) and one torch thread."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from egakit.sim import generate_world

SHARED_WORLD = "shared_tiny_world"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.getbasetemp() / SHARED_WORLD
    if not (out / "world.json").is_file():
        generate_world("tiny", out, seed=0, progress=False)
    return out


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
