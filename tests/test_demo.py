"""`ega demo`: the ``ega fit`` commands it composes from config files (phase, demo budget,
ablation), where their checkpoints land, the eval config relocated under ``--runs`` and, end to end
on the tiny world, the chain world -> four EGA-V1 phases -> cascades -> Table 1."""
import json

import pytest
import yaml

from egakit.demo import (
    ABLATION_DIR,
    ABLATIONS,
    CONFIG_SETS,
    PHASES,
    TABLE1_SYSTEMS,
    checkpoint_of,
    config_path,
    ensure_world,
    fit_args,
    relocate_eval_config,
    run_demo,
)
from egakit.evaluation import load_config
from egakit.lightning_cli import run_lightning_cli


def _printed_config(args, capsys) -> dict:
    with pytest.raises(SystemExit):
        run_lightning_cli([*args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_every_ablation_file_exists_and_names_its_run():
    for name in ABLATIONS:
        tree = yaml.safe_load(config_path(f"{ABLATION_DIR}/{name}.yaml").read_text())
        assert tree["run_variant"] == name


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_ablation_writes_where_the_eval_config_reads_and_chains_its_own_phases(name, tmp_path, capsys):
    """An ablation run (phase config + ablation file) writes runs/demo-<name>/ckpt/<phase>; the
    eval config reads its payment checkpoint, and each phase's init_from is the phase before in
    the same run (as the CLI resolves it)."""
    runs = tmp_path / "runs"
    evaluation = relocate_eval_config(load_config(config_path(CONFIG_SETS["small"].evaluation)), runs)
    read = {system.checkpoint for system in evaluation.systems}
    files = [[config_path(f"v1/{phase}.yaml"), config_path(f"{ABLATION_DIR}/{name}.yaml")] for phase in PHASES]
    ckpts = [checkpoint_of(f, runs) for f in files]
    assert ckpts[-1] == runs / f"demo-{name}" / "ckpt" / "payment" / "last.ckpt"
    assert str(ckpts[-1]) in read
    printed = _printed_config(fit_args(files[1], runs, tmp_path / "world"), capsys)
    assert printed["run_variant"] == name and printed["runs_dir"] == str(runs)
    assert printed["model"]["init_args"]["init_from"] == "{run_dir}/ckpt/pretrain/last.ckpt"
    from egakit.lightning_cli import expand_run_dir, run_dir_of

    assert expand_run_dir(printed["model"]["init_args"]["init_from"], run_dir_of(printed)) == str(ckpts[0])


def test_the_base_run_and_an_ablation_never_share_a_checkpoint(tmp_path):
    base = checkpoint_of([config_path("v1/pretrain.yaml")], tmp_path)
    variant = checkpoint_of([config_path("v1/pretrain.yaml"), config_path(f"{ABLATION_DIR}/no_gcf.yaml")], tmp_path)
    assert base == tmp_path / "demo" / "ckpt" / "pretrain" / "last.ckpt" and variant != base


def test_budget_files_override_existing_phase_configs():
    for config_set in CONFIG_SETS.values():
        for phase in PHASES:
            name = config_set.budget_for(f"{config_set.phases}/{phase}.yaml")
            if name is not None:
                assert config_path(f"{config_set.phases}/{phase}.yaml").is_file()
    assert CONFIG_SETS["small"].budget_for("v1/pretrain.yaml") == "demo/small/pretrain.yaml"
    assert CONFIG_SETS["small"].budget_for("v1/reward.yaml") is None


def test_the_small_demo_budget_shortens_pretraining_and_changes_nothing_else(tmp_path, capsys):
    """The demo's pre-training is the study's config with fewer steps, same run and checkpoint."""
    source = config_path("v1/pretrain.yaml")
    budget = config_path(CONFIG_SETS["small"].budget_for("v1/pretrain.yaml"))
    full = _printed_config(fit_args([source], tmp_path / "runs", tmp_path / "world"), capsys)
    demo = _printed_config(fit_args([source, budget], tmp_path / "runs", tmp_path / "world"), capsys)
    assert demo["trainer"]["max_steps"] < full["trainer"]["max_steps"]
    assert {k: v for k, v in demo.items() if k != "trainer"} == {k: v for k, v in full.items() if k != "trainer"}
    assert demo["trainer"]["callbacks"] == full["trainer"]["callbacks"]  # same checkpoint path
    assert checkpoint_of([source, budget], tmp_path) == checkpoint_of([source], tmp_path)


def test_relocating_the_eval_config_moves_only_paths_under_runs(tmp_path):
    config = load_config(config_path(CONFIG_SETS["small"].evaluation))
    moved = relocate_eval_config(config, tmp_path / "elsewhere")
    assert moved.world_dir == str(tmp_path / "elsewhere" / "demo" / "world")
    assert moved.evaluator == str(tmp_path / "elsewhere" / "demo" / "ckpt" / "reward" / "last.ckpt")
    assert moved.out_dir == config.out_dir == "reports/v1"  # not under runs/
    assert config.world_dir == "runs/demo/world"  # the loaded config is left as it was
    assert [s.name for s in moved.systems] == [s.name for s in config.systems]


def test_table1_systems_are_in_both_eval_configs():
    for config_set in CONFIG_SETS.values():
        names = {s.name for s in load_config(config_path(config_set.evaluation)).systems}
        assert set(TABLE1_SYSTEMS) <= names


def test_a_new_world_is_reported_so_that_no_stale_checkpoint_is_reused(tmp_path):
    world = tmp_path / "world"
    assert ensure_world(world, "tiny", 0) is True
    assert ensure_world(world, "tiny", 0) is False
    assert ensure_world(world, "tiny", 1) is True  # another seed: every stage must retrain


def test_unknown_preset_or_ablation_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no demo configs for preset 'city'"):
        run_demo(tmp_path / "runs", preset="city")
    with pytest.raises(ValueError, match="unknown budget 'short'"):
        run_demo(tmp_path / "runs", preset="tiny", budget="short")
    with pytest.raises(ValueError, match=r"unknown ablations \['no_such'\]"):
        run_demo(tmp_path / "runs", preset="tiny", full=True, ablations=["no_gcf", "no_such"])


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    reports = tmp_path / "reports"
    assert run_demo(tmp_path / "runs", preset="tiny", reports=reports) == 0
    table = json.loads((reports / "table1.json").read_text())
    assert {row["system"] for row in table["rows"]} == set(TABLE1_SYSTEMS)
    assert {row["source"] for row in table["rows"]} == {"oracle", "evaluator"}
    assert (tmp_path / "runs" / "tiny" / "ckpt" / "payment" / "last.ckpt").is_file()
    capsys.readouterr()
    assert run_demo(tmp_path / "runs", preset="tiny", reports=reports) == 0  # every stage reused
    out = capsys.readouterr().out
    assert out.count(": reusing ") == 10 and "reusing world" in out


def test_the_no_cf_cascade_run_writes_where_the_eval_config_reads(tmp_path):
    from egakit.demo import FULL_BASELINE_STAGES

    evaluation = relocate_eval_config(load_config(config_path(CONFIG_SETS["small"].evaluation)), tmp_path)
    (stage, override), = FULL_BASELINE_STAGES
    ckpt = checkpoint_of([config_path(f"baselines/small/{stage}.yaml"), config_path(override)], tmp_path)
    assert ckpt == tmp_path / "baselines" / "small-no_cf" / "mca" / "din" / "last.ckpt"
    assert str(ckpt) in {system.rank for system in evaluation.systems if system.name == "MCA w/o CF"}
