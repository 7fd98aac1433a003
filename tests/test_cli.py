"""The `ega` command: help, unknown commands, every YAML under configs/ parses (alone and with
each ablation file), configs found locally first and packaged otherwise, `ega configs`."""
from pathlib import Path

import pytest
import yaml

from egakit.cli import USAGE, main
from egakit.config_files import ConfigNotFoundError, export_configs, packaged_configs, resolve_config
from egakit.lightning_cli import run_lightning_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
#: Complete LightningCLI configs (a class_path for the model); override files only add keys.
LIGHTNING_CONFIGS = [p for p in CONFIGS if "class_path: egakit.lit" in p.read_text()]
ABLATION_FILES = sorted((REPO / "configs" / "v1" / "ablations").glob("*.yaml"))


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "world", "allocate", "evaluate", "perf", "demo", "configs"):
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
                                           ("demo", "ega demo"), ("configs", "ega configs")])
def test_extra_commands_route_to_their_parsers(command, prog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {prog}")


@pytest.mark.parametrize("ablation", ABLATION_FILES, ids=lambda p: p.stem)
def test_every_ablation_composes_with_a_phase_config(ablation, capsys):
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", "-c", str(REPO / "configs/v1/reward.yaml"), "-c", str(ablation), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    overrides = yaml.safe_load(ablation.read_text())
    assert printed["run_variant"] == ablation.stem
    for key, value in overrides["model"]["init_args"]["model"].items():
        assert printed["model"]["init_args"]["model"][key] == value
    assert printed["model"]["init_args"]["model"]["d"] == 32  # the shared small model underneath


def test_the_phases_of_a_size_share_one_model(capsys):
    models = []
    for phase in ("pretrain", "reward", "rlaf", "payment"):
        with pytest.raises(SystemExit):
            run_lightning_cli(["fit", "-c", str(REPO / f"configs/v1/{phase}.yaml"), "--print_config"])
        models.append(yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["model"])
    assert all(model == models[0] for model in models)


def test_a_config_path_resolves_locally_first_then_packaged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the packaged copy
    packaged = resolve_config("configs/v1/tiny/pretrain.yaml")
    assert packaged.is_file() and packaged.read_text() == (REPO / "configs/v1/tiny/pretrain.yaml").read_text()
    local = tmp_path / "configs" / "v1" / "tiny" / "pretrain.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("# mine\n")
    assert resolve_config("configs/v1/tiny/pretrain.yaml") == Path("configs/v1/tiny/pretrain.yaml")
    with pytest.raises(ConfigNotFoundError, match="no local file .*no_such.yaml and no packaged config configs/v1/no_such.yaml"):
        resolve_config("configs/v1/no_such.yaml")


def test_a_run_name_moves_the_checkpoints(tiny_world, tmp_path, monkeypatch):
    """`--run_name scratch`: an override run writes its own run, not the one the next phase reads."""
    monkeypatch.chdir(tmp_path)
    run_lightning_cli(["fit", "-c", "configs/v1/tiny/pretrain.yaml", f"--data.init_args.world_dir={tiny_world}",
                       "--trainer.max_steps=1", "--trainer.limit_val_batches=0", "--run_name=scratch"])
    assert (tmp_path / "runs" / "scratch" / "ckpt" / "pretrain" / "last.ckpt").is_file()
    assert not (tmp_path / "runs" / "tiny").exists()


def test_configs_list_and_export(tmp_path, capsys):
    assert main(["configs", "list"]) == 0
    listed = capsys.readouterr().out
    assert "configs/v1/pretrain.yaml" in listed and "configs/v1/ablations/no_gcf.yaml" in listed
    assert "v1/model/small.yaml" in packaged_configs()
    assert main(["configs", "export", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "v1" / "model" / "small.yaml").read_text() == (REPO / "configs/v1/model/small.yaml").read_text()
    capsys.readouterr()
    assert main(["configs", "export", str(tmp_path / "mine")]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert len(export_configs(tmp_path / "mine", force=True)) == len(packaged_configs())


def test_a_budget_that_would_leave_last_ckpt_short_of_the_last_steps_is_refused(tiny_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="max_steps=5 is not a multiple of the checkpoint's every_n_train_steps=2"):
        run_lightning_cli(["fit", "-c", "configs/v1/tiny/pretrain.yaml", f"--data.init_args.world_dir={tiny_world}",
                           "--trainer.max_steps=5", "--trainer.callbacks.init_args.every_n_train_steps=2"])


def test_the_no_cf_override_turns_a_ranker_and_its_data_off_cross_features(capsys):
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", "-c", str(REPO / "configs/baselines/small/mca/din.yaml"),
                           "-c", str(REPO / "configs/baselines/ablations/no_cf.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["model"]["use_cross_features"] is False
    assert printed["data"]["init_args"]["cross_features"] is False
    assert printed["run_name"] == "baselines/small" and printed["run_variant"] == "no_cf"
