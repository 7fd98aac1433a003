"""The set-aware vs point-wise study's bookkeeping: per-seed configs and the paired summary."""
from __future__ import annotations

import pytest
import yaml

from studies.pointwise_study import VARIANTS, checkpoint_stamp, markdown, run_paths, summarise


def test_each_seed_is_a_run_of_its_own_apart_from_the_demo(tmp_path, capsys):
    """Seed s of a variant trains into <runs>/seeds/s<s>[-no_gcf]/ckpt/pretrain (seed 0 too: the
    demo's budget is shorter), with its seed, on the world under <runs>; the CLI agrees."""
    from egakit.lightning_cli import expand_run_dir, run_dir_of, run_lightning_cli

    args, ckpt = run_paths("point_wise_no_gcf", 2, tmp_path)
    assert ckpt == tmp_path / "seeds" / "s2-no_gcf" / "ckpt" / "pretrain" / "last.ckpt"
    assert run_paths("set_aware", 0, tmp_path)[1] == tmp_path / "seeds" / "s0" / "ckpt" / "pretrain" / "last.ckpt"
    with pytest.raises(SystemExit):
        run_lightning_cli(["fit", *args, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 2
    assert printed["data"]["init_args"]["world_dir"] == str(tmp_path / "demo" / "world")
    assert printed["model"]["init_args"]["model"]["variant"] == "no_gcf"
    dirpath = printed["trainer"]["callbacks"][0]["init_args"]["dirpath"]
    assert expand_run_dir(dirpath, run_dir_of(printed)) == str(ckpt.parent)


def test_summary_is_paired_over_common_seeds():
    per_seed = {
        "set_aware": {"0": {"logged_auc": 0.70, "oracle_auc": 0.60}, "1": {"logged_auc": 0.72, "oracle_auc": 0.58},
                      "2": {"logged_auc": 0.9, "oracle_auc": 0.9}},
        "point_wise_no_gcf": {"0": {"logged_auc": 0.69, "oracle_auc": 0.61}, "1": {"logged_auc": 0.70, "oracle_auc": 0.59}},
    }
    s = summarise(per_seed)
    assert s["seeds"] == [0, 1]  # seed 2 has no point-wise run: left out of the pairing
    d = s["logged_auc"]["paired_difference"]
    assert d["mean"] == pytest.approx(0.015) and d["set_aware_better_in"] == 2 and d["of"] == 2
    assert s["oracle_auc"]["paired_difference"]["set_aware_better_in"] == 0
    assert s["logged_auc"]["set_aware"]["mean"] == pytest.approx(0.71)
    text = markdown({"what": "w", "world": "x", "commit": "c", "summary": s, "per_seed": per_seed,
                     "metrics": {"logged_auc": "a", "oracle_auc": "b"}})
    assert "| 1 | 0.7200 | 0.7000 | 0.5800 | 0.5900 |" in text and "better in 2 of 2" in text


def test_checkpoint_stamp_changes_when_the_checkpoint_is_rewritten(tmp_path):
    import os

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"a")
    first = checkpoint_stamp(ckpt)
    os.utime(ckpt, ns=(1, 1))
    assert checkpoint_stamp(ckpt) != first and checkpoint_stamp(ckpt).startswith(str(ckpt))


def test_sign_flip_p_value_counts_sign_assignments():
    from itertools import product

    from studies.pointwise_study import sign_flip_p_value

    diffs = [0.004, -0.002, 0.007, 0.001, 0.003]
    observed = abs(sum(diffs)) / len(diffs)
    brute = sum(abs(sum(s * d for s, d in zip(signs, diffs))) / len(diffs) >= observed - 1e-12
                for signs in product((1, -1), repeat=len(diffs))) / 2 ** len(diffs)
    assert sign_flip_p_value(diffs) == pytest.approx(brute)
    assert sign_flip_p_value([0.01] * 5) == pytest.approx(2 / 32)  # 5 seeds can never reach p < 0.05
    assert sign_flip_p_value([0.01] * 10) < 0.005
    assert sign_flip_p_value([0.01, -0.01]) == 1.0
    many = sign_flip_p_value([0.01 + 0.001 * i for i in range(20)])  # Monte-Carlo branch
    assert many < 0.001


def test_study_commands_cover_every_seed_and_variant(tmp_path):
    from studies.pointwise_study import study_commands

    commands = study_commands([0, 3], tmp_path)
    assert len(commands) == 2 * len(VARIANTS)
    assert any("ablations/no_gcf.yaml" in c and "--run_name=seeds/s3" in c
               and "seeds/s3-no_gcf/ckpt/pretrain/last.ckpt" in c for c in commands)
    assert any("no_gcf" not in c and "seeds/s0/ckpt/pretrain/last.ckpt" in c for c in commands)
