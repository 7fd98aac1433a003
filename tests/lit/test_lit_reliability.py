"""Faults and bad inputs of the `ega` commands on the tiny world and the chained tiny checkpoints:
every one ends with a non-zero exit and ONE message naming what and where (no traceback), and a
crafted checkpoint never runs code (local file or URL)."""
from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from egakit.checkpoint import CheckpointError, load_ega_v1, ENCODER
from egakit.cli import main
from egakit.sim.io import read_requests
from lit_helpers import TINY_CONFIGS, phase_args, working_directory

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class Payload:
    """Unpickling this creates ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload(marker)}}, path)
    return path


def _ega(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _one_message(err: str, *needles: str) -> None:
    """No traceback, and one error line (Lightning's own INFO lines, e.g. "GPU available", may precede it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("ega")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture(autouse=True)
def lightning_logs_to_the_current_stderr():
    """Lightning's log handlers keep the stderr of the test that imported Lightning (closed since);
    point them at this test's."""
    import logging
    import sys

    loggers = [logging.getLogger()] + [l for l in logging.root.manager.loggerDict.values() if isinstance(l, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stderr
    yield


@pytest.fixture()
def served(tmp_path):
    """A directory served on 127.0.0.1 from a thread: (url of the directory, the directory)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------- code


def test_a_crafted_checkpoint_from_a_url_never_runs(lit_world, served, tmp_path, capsys):
    url, root = served
    marker = tmp_path / "pwned"
    _crafted_checkpoint(root / "evil.ckpt", marker)
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, f"--ckpt_path={url}/evil.ckpt"))
    assert not marker.exists()
    assert code == 2
    _one_message(err, "evil.ckpt", "remote checkpoints are not loaded")
    # the Python API (a phase module installs SafeCheckpointIO) refuses it too
    from egakit.lit.interrupt import LocalAtomicCheckpointIO

    with pytest.raises(CheckpointError, match="remote"):
        LocalAtomicCheckpointIO().load_checkpoint(f"{url}/evil.ckpt", weights_only=False)
    assert not marker.exists()


def test_a_crafted_local_checkpoint_never_runs(lit_world, chain, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, f"--ckpt_path={evil}"))
    assert code == 2 and not marker.exists()
    _one_message(err, str(evil), "weights_only=True")
    code, err = _ega(capsys, "allocate", "--ckpt", evil, "--world", lit_world, "--request-id", 0)
    assert code == 2 and not marker.exists()
    _one_message(err, str(evil))


# ---------------------------------------------------------------------------------------- resume


def test_a_checkpoint_of_another_phase_is_refused_before_anything_runs(lit_world, chain, tmp_path, capsys):
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, f"--ckpt_path={chain['payment']}"))
        assert code == 2
        _one_message(err, "phase: checkpoint 'payment', this run 'pretrain'")
        assert not (tmp_path / "runs").exists()  # nothing trained, nothing overwritten
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, f"--ckpt_path={chain['pretrain']}",
                                             "--model.init_args.model.d=8"))
        assert code == 2
        _one_message(err, "model.d: checkpoint 16, this run 8")


def test_resume_last_with_nothing_to_resume_is_an_error_unless_asked(lit_world, tmp_path, capsys):
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, "--ckpt_path=last"))
        assert code == 2
        _one_message(err, "nothing to resume", "--allow_fresh_start")
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, "--ckpt_path=last", "--allow_fresh_start=true",
                                             "--trainer.max_steps=1", "--trainer.limit_val_batches=0"))
        assert code == 0, err
        assert (tmp_path / "runs/tiny/ckpt/pretrain/last.ckpt").is_file()


# ---------------------------------------------------------------------------------------- wrong answers


def _nan_copy(src: Path, dst: Path) -> Path:
    ckpt = torch.load(src, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.startswith("model.generator") and ckpt["state_dict"][k].is_floating_point())
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    torch.save(ckpt, dst)
    return dst


def test_nan_weights_are_refused(lit_world, chain, tmp_path, capsys):
    nan = _nan_copy(chain["payment"], tmp_path / "nan.ckpt")
    code, err = _ega(capsys, "allocate", "--ckpt", nan, "--world", lit_world, "--request-id",
                     read_requests(lit_world, "test", ["request_id"])["request_id"][0].as_py())
    assert code == 2
    _one_message(err, "non-finite weights", "model.generator")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_ega_v1(nan, ENCODER)
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("payment", lit_world, f"--ckpt_path={nan}"))
    assert code == 2 and "non-finite weights" in err


def test_a_checkpoint_without_vocab_sizes_is_a_message(lit_world, chain, tmp_path, capsys):
    ckpt = torch.load(chain["payment"], weights_only=True)
    del ckpt["egakit"]["vocab_sizes"]
    torch.save(ckpt, tmp_path / "novocab.ckpt")
    code, err = _ega(capsys, "allocate", "--ckpt", tmp_path / "novocab.ckpt", "--world", lit_world, "--request-id", 0)
    assert code == 2
    _one_message(err, "novocab.ckpt", "vocab_sizes")


@pytest.mark.parametrize("split, loader", [("train", "pretrain[:0]"), ("val", "posttrain[:0]")])
def test_empty_splits_are_errors(lit_world, tmp_path, capsys, split, loader):
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("pretrain", lit_world, f"--data.init_args.splits.{split}={loader}",
                                             "--trainer.max_steps=1"))
    assert code == 2
    _one_message(err, f"the {split} loader's split {loader!r} yields no batch")


# ---------------------------------------------------------------------------------------- messages


def test_a_missing_world_names_it_and_ega_world(tmp_path, capsys):
    with working_directory(tmp_path):
        code, err = _ega(capsys, "fit", "-c", TINY_CONFIGS / "pretrain.yaml", "--data.init_args.world_dir=nowhere")
    assert code == 2
    _one_message(err, "nowhere/world.json", "ega world")


def test_config_errors_are_one_message_and_debug_shows_the_traceback(lit_world, tmp_path, capsys):
    args = phase_args("pretrain", lit_world, "--model.init_args.model.K=3")
    with working_directory(tmp_path):
        code, err = _ega(capsys, *args)
        assert code == 2
        _one_message(err, "model.K=3")
        with pytest.raises(Exception, match="model.K=3"):  # --debug: the exception itself
            main([*args, "--debug"])


def test_world_data_errors_are_one_message(lit_world, tmp_path, capsys):
    broken = tmp_path / "world"
    shutil.copytree(lit_world, broken)
    meta = json.loads((broken / "world.json").read_text())
    meta["schema_version"] = 999
    (broken / "world.json").write_text(json.dumps(meta))
    with working_directory(tmp_path):
        code, err = _ega(capsys, *phase_args("pretrain", broken))
    assert code == 2
    _one_message(err, "world.json", "schema version 999")


# ---------------------------------------------------------------------------------------- multi-process


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp"])
def test_fit_runs_on_two_cpu_processes(lit_world, tmp_path, strategy):
    """`ega fit --trainer.strategy ddp_spawn|ddp --trainer.devices 2` on CPU (gloo): ddp_spawn pickles
    the model, whose instantiator refers to the CLI object (a local class could not be pickled)."""
    import subprocess
    import sys

    args = phase_args("pretrain", lit_world, f"--trainer.strategy={strategy}", "--trainer.devices=2",
                      "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--data.init_args.batch_size=4")
    proc = subprocess.run([sys.executable, "-m", "egakit", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs/tiny/ckpt/pretrain/last.ckpt").is_file()
