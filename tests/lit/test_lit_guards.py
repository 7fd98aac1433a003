"""`ega fit|validate` guards: no code runs from a checkpoint, no run is resumed from another run's
checkpoint, a missing `last` is an error, failures are one message, and SIGTERM / SIGINT leave a
resumable checkpoint."""
from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from egakit.cli import main
from lit_helpers import TINY_CONFIGS, phase_args, working_directory


class _Payload:
    """Unpickling this runs code: it touches ``MARKER``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture()
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(str(marker))}, path)
    return path, marker


def _fit(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def test_a_remote_checkpoint_is_refused_and_its_payload_never_runs(lit_world, evil_checkpoint, tmp_path, capsys):
    path, marker = evil_checkpoint
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(path.parent), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        with working_directory(tmp_path):
            code, err = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=1", f"--ckpt_path={url}"))
    finally:
        server.shutdown()
    assert code == 2 and "remote checkpoints are not loaded" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_local_pickle_payload_never_runs(lit_world, evil_checkpoint, tmp_path, capsys):
    path, marker = evil_checkpoint
    with working_directory(tmp_path):
        code, err = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=1", f"--ckpt_path={path}"))
    assert code == 2 and "weights_only=True" in err
    assert not marker.exists()


def test_resuming_from_another_phase_is_refused_and_nothing_is_overwritten(lit_world, chain, tmp_path, capsys):
    with working_directory(tmp_path):
        target = tmp_path / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt"
        target.parent.mkdir(parents=True)
        shutil.copy(chain["pretrain"], target)
        before = target.read_bytes()
        code, err = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=5",
                                             f"--ckpt_path={chain['payment']}"))
        assert code == 2 and "phase: checkpoint 'payment', this run 'pretrain'" in err, err
        assert target.read_bytes() == before
        code, err = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=5",
                                             f"--ckpt_path={target}", "--model.init_args.model.d=8"))
        assert code == 2 and "model.d: checkpoint" in err, err


def test_last_with_nothing_to_resume_is_an_error_unless_asked(lit_world, tmp_path, capsys):
    with working_directory(tmp_path):
        code, err = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=1", "--ckpt_path=last"))
        assert code == 2 and "nothing to resume" in err and "--allow_fresh_start" in err
        assert not (tmp_path / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt").exists()
        code, _ = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=1", "--ckpt_path=last",
                                           "--allow_fresh_start=true", "--trainer.logger=false"))
        assert code == 0 and (tmp_path / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt").is_file()
        # and now `last` resumes it
        code, _ = _fit(capsys, *phase_args("pretrain", lit_world, "--trainer.max_steps=2", "--ckpt_path=last",
                                           "--trainer.logger=false"))
        assert code == 0


def test_a_missing_world_is_one_message_naming_it(tmp_path, capsys):
    with working_directory(tmp_path):
        code, err = _fit(capsys, "fit", "-c", str(TINY_CONFIGS / "pretrain.yaml"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "world.json not found" in err and "ega world" in err and "runs/worlds/tiny" in err
    assert "Traceback" not in err and len(lines) == 1, err


def test_version_and_the_alias_prog(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("egakit ") and "torch " in out and "lightning " in out
    result = subprocess.run([str(Path(sys.executable).parent / "lightning"), "fit", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: lightning [options] fit"), result.stdout[:200]


SLOW_STEP = """
import time, lightning.pytorch as pl
class SlowStep(pl.Callback):
    def on_train_batch_end(self, *args, **kwargs):
        time.sleep(0.2)
"""


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_signal_saves_a_resumable_checkpoint(lit_world, tmp_path, sig, status):
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = phase_args("pretrain", lit_world, "--trainer.max_steps=400", "--trainer.logger=false",
                      "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
                      "--trainer.callbacks+=slow_step.SlowStep")
    proc = subprocess.Popen([sys.executable, "-m", "egakit", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt_dir = tmp_path / "runs" / "tiny" / "ckpt" / "pretrain"
    deadline = time.time() + 90
    while time.time() < deadline and not list(tmp_path.glob("runs/**/*")):
        time.sleep(0.2)
    time.sleep(3)  # a few steps in
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    assert "Saved a resumable checkpoint" in err
    saved = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert 0 < saved["global_step"] < 400
    assert not [p for p in ckpt_dir.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]  # no temporary file left
