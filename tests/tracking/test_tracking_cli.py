"""`ega --version`, the program name of the `lightning` alias, the CSV fallback's logger entry."""
from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from egakit.cli import invoked_prog, main
from egakit.lightning_cli import RUN_DIR, run_lightning_cli


def test_version_prints_egakit_torch_lightning(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    for package in ("egakit", "torch", "lightning"):
        assert f"{package} {version(package)}" in out


@pytest.mark.parametrize("argv0, prog", [("/venv/bin/lightning", "lightning"), ("/venv/bin/ega", "ega"),
                                         ("/x/egakit/__main__.py", "ega"), ("pytest", "ega")])
def test_prog_is_the_invoked_name(argv0, prog):
    assert invoked_prog(argv0) == prog


def test_lightning_alias_help_names_lightning(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--help"], prog="lightning")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: lightning ")


def test_installed_lightning_script_says_lightning():
    script = Path(sys.executable).parent / "lightning"
    if not script.is_file():
        script = Path(shutil.which("lightning") or "")
    if not script.is_file():
        pytest.skip("no `lightning` console script installed")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.startswith("usage: lightning <command>")


def test_csv_fallback_when_wandb_cannot_be_imported(monkeypatch, capsys):
    from jsonargparse import Namespace

    from egakit.lightning_cli import CSV_LOGGER, default_trainer_logger, fall_back_to_csv_logger

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    logger = default_trainer_logger()
    entry = Namespace(class_path=logger["class_path"], init_args=Namespace(**logger["init_args"]))
    config = Namespace(trainer=Namespace(logger=entry))
    fall_back_to_csv_logger(config)
    assert entry.class_path == CSV_LOGGER
    assert entry.init_args.save_dir == RUN_DIR  # the run's directory, expanded before instantiation
    assert "wandb is not available" in capsys.readouterr().err


def test_default_logger_is_offline_unless_the_user_chose(monkeypatch):
    from egakit.lightning_cli import default_trainer_logger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert default_trainer_logger()["init_args"]["offline"] is True
    monkeypatch.setenv("WANDB_MODE", "online")
    assert default_trainer_logger()["init_args"]["offline"] is False
