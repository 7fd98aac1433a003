"""The `ega` command: help, unknown commands, and every YAML under configs/ parses."""
from pathlib import Path

import pytest

from egakit.cli import USAGE, main
from egakit.lightning_cli import run_lightning_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
LIGHTNING_CONFIGS = [p for p in CONFIGS if "model:" in p.read_text()]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "world", "allocate", "evaluate", "perf", "demo"):
        assert f"  {command}" in out
    assert out.strip() == USAGE.strip()


def test_unknown_command_is_an_error(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_there_are_configs_to_check():
    assert LIGHTNING_CONFIGS, "configs/ holds no LightningCLI config"


@pytest.mark.parametrize("config", LIGHTNING_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_parses(config, capsys):
    """A broken config (unknown key, bad class_path, wrong type) fails here, not at a user's desk."""
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "-c", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "trainer:" in printed


@pytest.mark.parametrize("command, prog", [("allocate", "ega allocate"), ("evaluate", "ega evaluate"),
                                           ("perf", "python -m egakit.perf"), ("world", "ega world"),
                                           ("demo", "ega demo")])
def test_extra_commands_route_to_their_parsers(command, prog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {prog}")
