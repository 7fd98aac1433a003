"""Test-wide setup.

Without CUDA, the Triton kernels run in Triton's CPU interpreter; Triton reads TRITON_INTERPRET
when kernels are decorated, so it must be set before `kernels` is imported anywhere.
"""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One intra-op thread: the suite is many small ops, where extra threads cost more than they give
# (measured here: ~100x slower per small op with 2 threads on a loaded 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real tiny world (preset tiny, seed 0), generated once per session and shared by every
    test folder; a test that changes files copies it first."""
    from egakit.sim import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world("tiny", out, seed=0, progress=False)
    return out
