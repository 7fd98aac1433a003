"""`ega --version`, the program name of the `lightning` alias, the CSV fallback's logger entry."""
from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from egakit.cli import invoked_prog, main, run_lightning_cli


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
