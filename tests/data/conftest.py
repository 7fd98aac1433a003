"""Shared fixture: one real tiny world (egakit.sim.generate_world) per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from egakit.sim import generate_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data_world") / "tiny"
    generate_world("tiny", out, seed=0, progress=False)
    return out
