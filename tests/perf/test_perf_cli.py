"""``python -m egakit.perf flops --quick`` writes schema-valid JSON (suite + summary) and a plot into a folder."""
import json

import pytest
import torch

from egakit.perf import summary
from egakit.perf.__main__ import main

ENVIRONMENT_KEYS = {"device": str, "device_name": str, "torch": str, "triton": str, "commit": (str, type(None))}
ROW_KEYS = {"module": str, "mode": str, "N": int, "L": int, "measured_flops": int, "formula_flops": (int, float),
            "ratio": float, "within_tolerance": bool, "per_op": dict, "kernel_ops_seen": list}


def check_types(obj, schema, where):
    for key, kind in schema.items():
        assert key in obj, f"{where}: missing {key!r}"
        assert isinstance(obj[key], kind), f"{where}.{key}: {type(obj[key]).__name__} is not {kind}"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_flops_quick_writes_schema_valid_json(tmp_path, restore_threads, capsys):
    main(["flops", "--quick", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "flops_cpu.json").read_text())
    assert payload["suite"] == "flops"
    check_types(payload["environment"], ENVIRONMENT_KEYS, "environment")
    assert payload["environment"]["device"] == "cpu"
    assert payload["rows"]
    for row in payload["rows"]:
        check_types(row, ROW_KEYS, f"row {row.get('module')}")
        assert row["mode"] in ("forward", "train")
    assert payload["all_within_tolerance"] is True
    assert {"ega.cluster_aggregate", "ega.slot_argmax"} <= set(payload["kernel_ops_seen"])
    assert all(isinstance(v, float) for v in payload["measured_over_formula"].values())
    assert len(payload["claims"]) == 2
    for claim in payload["claims"]:
        check_types(claim, {"claim": str, "holds": bool, "verdict": str, "ratios": dict}, "claim")
    assert (tmp_path / "flops_cpu.png").stat().st_size > 0

    top = json.loads((tmp_path / "summary.json").read_text())
    for key in summary.REQUIRED_KEYS:
        assert key in top
    assert top["device"] == "cpu"
    assert top["flops_measured_over_formula"] == payload["measured_over_formula"]
    assert top["inference_growth_exponent"] is None and top["kernel_speedup"] is None  # suites not run
    assert "Claim:" in capsys.readouterr().out
