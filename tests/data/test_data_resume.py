"""Exact mid-epoch resume under Lightning (docs/design.md §12, docs/operations.md#resuming-mid-epoch): crash at step 4 in a subprocess
(Lightning exits the process after a KeyboardInterrupt), resume from ``last`` and compare the
consumed sequence with an uninterrupted run: same batches, same order, same sampled candidates.

Cases: 0 and 2 workers, and 2 workers with a loader of unknown length, which makes Lightning
pre-fetch a batch ahead of the model (the case that skipped a batch with Lightning's own loader
state). Also: a run SIGKILLed mid-epoch, and runs stopped by SIGTERM / SIGINT (whose only
checkpoint is the one the signal saved), resume to bit-identical weights and the same consumed
sequence."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import resume_job

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated", "ignore:.*__len__.*:UserWarning")

CRASH_AT = 4
CASES = ["w0", "w2", "w2-unsized"]


def _consumed(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "consumed.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def crashed(tiny_world, tmp_path_factory) -> Path:
    """Every case crashed at step 4, in one subprocess (one Lightning import)."""
    out = tmp_path_factory.mktemp("crashed")
    proc = subprocess.run(
        [sys.executable, resume_job.__file__, str(tiny_world), str(out), *CASES, "--crash-at", str(CRASH_AT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for case in CASES:
        assert f"{case}: run ended with exit code 1" in proc.stderr  # Lightning's interrupt exit
    return out


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory) -> dict:
    """Uninterrupted runs, one per worker count (the order does not depend on the loader's length)."""
    out = tmp_path_factory.mktemp("straight")
    runs = {}
    for case in ("w0", "w2"):
        resume_job.run(str(tiny_world), out, case)
        runs[case] = _consumed(out / case)
        runs[f"{case}-weights"] = torch.load(out / case / "weights.pt", weights_only=True)
    return runs


@pytest.mark.parametrize("case", CASES)
def test_resume_after_crash_consumes_the_uninterrupted_sequence(tiny_world, crashed, reference, case):
    folder = crashed / case
    assert len(_consumed(folder)) == CRASH_AT and (folder / "ckpt" / "last.ckpt").is_file()
    resume_job.run(str(tiny_world), crashed, case, resume=True)
    resumed = _consumed(folder)
    expected = reference[case.split("-")[0]]
    per_epoch = [sum(1 for rec in expected if rec["epoch"] == e) for e in range(resume_job.MAX_EPOCHS)]
    assert per_epoch[0] > CRASH_AT and per_epoch[0] == per_epoch[1]
    assert resumed == expected  # no repeat, no skip, same sampled candidates
    for epoch in range(resume_job.MAX_EPOCHS):
        ids = [r for rec in resumed if rec["epoch"] == epoch for r in rec["request_ids"]]
        assert len(ids) == len(set(ids))


def _interrupted_run(tiny_world, out: Path, case: str, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(out / "tmp")}  # Lightning's own atomic save would stage here
    (out / "tmp").mkdir(parents=True)
    return subprocess.run([sys.executable, resume_job.__file__, str(tiny_world), str(out), case, *flags],
                          capture_output=True, text=True, timeout=300, env=env)


def _resume_and_compare(tiny_world, out: Path, case: str, reference: dict) -> None:
    resume_job.run(str(tiny_world), out, case, resume=True)
    assert _consumed(out / case) == reference[case]  # same batches, same order, same candidates
    weights = torch.load(out / case / "weights.pt", weights_only=True)
    for name, value in reference[f"{case}-weights"].items():
        assert torch.equal(weights[name], value), name  # bit-identical to the uninterrupted run


def test_sigkill_mid_epoch_resumes_to_the_same_weights_and_sequence(tiny_world, reference, tmp_path):
    proc = _interrupted_run(tiny_world, tmp_path, "w0", "--kill-at", str(CRASH_AT + 1))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_consumed(tmp_path / "w0")) == CRASH_AT + 1
    assert not [p for p in (tmp_path / "tmp").rglob("*") if p.is_file() and p.stat().st_size > 0]  # no orphans
    _resume_and_compare(tiny_world, tmp_path, "w0", reference)


@pytest.mark.parametrize("name, case", [("TERM", "w0"), pytest.param("INT", "w2", marks=pytest.mark.slow)])
def test_a_signal_saves_a_resumable_checkpoint(tiny_world, reference, tmp_path, name, case):
    """SIGTERM / SIGINT at step 4: the batch in flight completes, a checkpoint is saved (the run has
    no per-step checkpoints), the run stops with 128 + signal, and resuming it matches the
    uninterrupted run."""
    proc = _interrupted_run(tiny_world, tmp_path, case, "--signal-at", str(CRASH_AT), "--signal", name)
    signum = getattr(signal, f"SIG{name}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Saved a resumable checkpoint" in proc.stderr and f"exit code {128 + signum}" in proc.stderr, proc.stderr[-2000:]
    assert (tmp_path / case / "ckpt" / "last.ckpt").is_file()
    assert len(_consumed(tmp_path / case)) == CRASH_AT + 1
    assert not list((tmp_path / case / "ckpt").glob(".saving-*"))
    _resume_and_compare(tiny_world, tmp_path, case, reference)
