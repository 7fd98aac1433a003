"""The effect probe and the dense-fit diagnostic: least squares on within-request-centred terms, the ad-level crowding split,
and a run on a tiny pre-trained checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from studies.dense_fit import dense_fit
from studies.effect_probe import TERMS, ad_mean_crowding, centred_within, probe, regress
from egakit.sim.oracle import Oracle

REPO = Path(__file__).resolve().parents[2]


def test_centred_within_removes_each_groups_mean():
    x = np.array([1.0, 3.0, 10.0, 20.0, 30.0])
    group = np.array([7, 7, 2, 2, 2])
    np.testing.assert_allclose(centred_within(x, group), [-1.0, 1.0, -10.0, 0.0, 10.0])


def test_regress_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    terms = {name: rng.normal(size=5000) for name in TERMS}
    truth = {"interest": 0.5, "quality": 1.0, "cross": 0.0, "distance": -0.2, "crowding_ad_mean": 0.8, "crowding_set": 0.3}
    logit = sum(truth[name] * terms[name] for name in TERMS) + 0.1 * rng.normal(size=5000)
    fit = regress(logit, terms)
    for name in TERMS:
        assert fit["coefficients"][name] == pytest.approx(truth[name], abs=0.01)
    assert fit["r2"] > 0.99


def test_ad_mean_crowding_is_the_mean_over_the_sets_holding_the_ad(tiny_world):
    oracle = Oracle.from_world(tiny_world)
    rows, mean = ad_mean_crowding(oracle)
    first = int(rows[0])
    values = []
    for set_id in range(len(oracle.set_cells)):
        set_rows, crowd = oracle.candidate_set(set_id)
        values += crowd[set_rows == first].tolist()
    assert float(mean[0]) == pytest.approx(float(np.mean(values)), abs=1e-5)


def test_probe_on_a_tiny_pretrained_checkpoint(trained, tiny_world):
    ckpt = str(trained / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt")
    result = probe([ckpt], str(tiny_world), requests=6)
    assert result["requests"] == 6
    assert set(result["term_std"]) == set(TERMS)
    fit = result["models"][ckpt]
    assert set(fit["coefficients"]) == set(TERMS)
    assert -1e-6 <= fit["r2"] <= 1.0


def test_dense_fit_trains_on_the_truth_and_probes_by_step(tiny_world, tmp_path):
    """The dense-supervision diagnostic on the tiny pre-training config: its loss is the BCE
    against the true CTR (it falls), and it probes at the requested steps."""
    config = yaml.safe_load((REPO / "configs" / "v1" / "tiny" / "pretrain.yaml").read_text())
    config["data"]["init_args"]["world_dir"] = str(tiny_world)
    model_file = REPO / "configs" / "v1" / "tiny" / config["model"]["init_args"]["model"]
    config["model"]["init_args"]["model"] = yaml.safe_load(model_file.read_text())  # the copy stands alone
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    result = dense_fit(str(path), steps=4, probe_every=2, requests=4)
    assert sorted(result["probes"]) == ["2", "4"]
    assert set(result["probes"]["4"]["coefficients"]) == set(TERMS)
    assert result["final_loss_mean_last_100"] > 0
    point_wise = dense_fit(str(path), steps=2, variant="no_gcf", requests=4)
    assert point_wise["variant"] == "no_gcf" and list(point_wise["probes"]) == ["2"]

