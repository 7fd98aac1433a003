"""`ega demo`: its config rewriting (relocated runs/, ablation checkpoints) and, end to end on the
tiny world, the chain world -> four EGA-V1 phases -> cascades -> Table 1; the demo budget."""
import json
from pathlib import Path

import pytest
import yaml

from egakit.demo import (
    ABLATIONS,
    CONFIG_SETS,
    CONFIGS,
    PHASES,
    TABLE1_SYSTEMS,
    as_ablation,
    checkpoint_of,
    ensure_world,
    load_budget,
    merged,
    relocate,
    run_demo,
    write_config,
)


def test_relocate_moves_only_paths_under_runs(tmp_path):
    tree = {"a": "runs/demo/world", "b": ["runs/x.ckpt", "reports/v1"], "c": 3, "d": "myruns/x"}
    moved = relocate(tree, tmp_path / "elsewhere")
    assert moved == {"a": str(tmp_path / "elsewhere/demo/world"),
                     "b": [str(tmp_path / "elsewhere/x.ckpt"), "reports/v1"], "c": 3, "d": "myruns/x"}


def test_as_ablation_renames_phase_checkpoints_only():
    tree = {"init_from": "runs/demo/ckpt/reward/last.ckpt", "dirpath": "runs/demo/ckpt/rlaf",
            "world": "runs/demo/world", "other": "runs/demo/ckpt/pretrain_no_gcf"}
    assert as_ablation(tree, "m4") == {
        "init_from": "runs/demo/ckpt/reward_m4/last.ckpt", "dirpath": "runs/demo/ckpt/rlaf_m4",
        "world": "runs/demo/world", "other": "runs/demo/ckpt/pretrain_no_gcf",
    }


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_checkpoint_is_one_the_eval_config_reads(name, tmp_path):
    """The ablations write where configs/eval/v1.yaml looks, and chain their own phases."""
    runs = tmp_path / "runs"
    eval_tree = relocate(yaml.safe_load((CONFIGS / "eval" / "v1.yaml").read_text()), runs)
    read = {system.get("checkpoint") for system in eval_tree["systems"]}
    configs = [write_config(CONFIGS / "v1" / f"{phase}.yaml", runs, tmp_path / "configs", ablation=name)
               for phase in PHASES]
    assert str(checkpoint_of(configs[-1])) in read
    for previous, config in zip(configs, configs[1:]):
        tree = yaml.safe_load(config.read_text())
        assert tree["model"]["init_args"]["init_from"] == str(checkpoint_of(previous))
        for key, value in ABLATIONS[name]["model"].items():
            assert tree["model"]["init_args"]["model"][key] == value


def test_merged_overrides_mappings_key_by_key():
    tree = {"trainer": {"max_steps": 2400, "devices": 1, "callbacks": [1, 2]}, "seed_everything": 0}
    out = merged(tree, {"trainer": {"max_steps": 1200, "callbacks": [3]}})
    assert out == {"trainer": {"max_steps": 1200, "devices": 1, "callbacks": [3]}, "seed_everything": 0}
    assert tree["trainer"]["max_steps"] == 2400  # the input is left as it was


def test_budget_files_name_existing_configs_and_reject_bad_entries(tmp_path):
    for config_set in CONFIG_SETS.values():
        load_budget(config_set.demo_budget)  # raises on a key that names no config
    bad = tmp_path / "budget.yaml"
    bad.write_text("v1/no_such.yaml:\n  trainer: {max_steps: 1}\n")
    with pytest.raises(ValueError, match="names no config"):
        load_budget(bad)
    bad.write_text("v1/pretrain.yaml: 3\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_budget(bad)


def test_the_small_demo_budget_shortens_pretraining_and_still_parses(tmp_path, capsys):
    """The demo's pre-training config is the study's with fewer steps, and LightningCLI takes it."""
    from egakit.lightning_cli import run_lightning_cli

    budget = load_budget(CONFIG_SETS["small"].demo_budget)
    source = CONFIGS / "v1" / "pretrain.yaml"
    full = yaml.safe_load(write_config(source, tmp_path / "runs", tmp_path / "full").read_text())
    demo_config = write_config(source, tmp_path / "runs", tmp_path / "demo", budget=budget)
    demo = yaml.safe_load(demo_config.read_text())
    assert demo["trainer"]["max_steps"] < full["trainer"]["max_steps"]
    assert {k: v for k, v in demo.items() if k != "trainer"} == {k: v for k, v in full.items() if k != "trainer"}
    assert demo["trainer"]["callbacks"] == full["trainer"]["callbacks"]  # same checkpoint path
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", "-c", str(demo_config), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] == demo["trainer"]["max_steps"]


def test_table1_systems_are_in_both_eval_configs():
    for config_set in CONFIG_SETS.values():
        names = {s["name"] for s in yaml.safe_load(config_set.evaluation.read_text())["systems"]}
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
    capsys.readouterr()
    assert run_demo(tmp_path / "runs", preset="tiny", reports=reports) == 0  # every stage reused
    out = capsys.readouterr().out
    assert out.count(": reusing ") == 10 and "reusing world" in out
