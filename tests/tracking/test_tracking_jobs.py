"""W&B runs of the jobs outside Lightning, read back offline: `ega evaluate`'s tables as W&B tables
with their plot, the perf suite's results (job_type perf)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from egakit.evaluation.config import METRICS  # noqa: E402
from egakit.evaluation.report import log_tables_to_wandb, wandb_columns  # noqa: E402
from egakit.tracking import offline_run, read_offline_run  # noqa: E402

from tracking_helpers import WANDB_HOME_VARS  # noqa: E402


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    for name in WANDB_HOME_VARS:
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    yield tmp_path
    import wandb

    wandb.teardown()  # flush the transaction logs, as at process exit


def _single_run(save_dir: Path) -> dict:
    import wandb

    wandb.teardown()
    runs = sorted((save_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return read_offline_run(runs[0])


def test_evaluation_tables_and_plot_logged(wandb_home):
    rows = [{"system": "EGA-V1", "source": "oracle", "metrics": {m: 0.5 for m in METRICS},
             "std": {m: 0.01 for m in METRICS}, "seeds": 2}]
    png = wandb_home / "scaling.png"
    plt.figure()
    plt.plot([1, 2], [3, 4])
    plt.savefig(png)
    plt.close()
    save_dir = wandb_home / "runs"
    with offline_run("evaluate", "v1", group="eval", config={"seeds": 2}, save_dir=save_dir) as run:
        log_tables_to_wandb(run, {"table1": rows}, {"scaling": png})
    logged = _single_run(save_dir)
    assert (logged["name"], logged["group"], logged["job_type"]) == ("v1", "eval", "evaluate")
    assert logged["config"]["seeds"] == 2
    summary = logged["summary"]
    assert (summary["table1/_type"], summary["table1/ncols"], summary["table1/nrows"]) == ("table-file", len(wandb_columns()), 1)
    assert summary["scaling/_type"] == "image-file"
    run_files = next((save_dir / "wandb").glob("offline-run-*")) / "files"
    table = json.loads((run_files / summary["table1/path"]).read_text())
    assert table["columns"] == wandb_columns()
    assert table["data"][0][:3] == ["EGA-V1", "oracle", 0.5]
    assert (run_files / summary["scaling/path"]).is_file()


def test_perf_suite_logs_a_perf_run(wandb_home):
    from egakit.perf.__main__ import main

    out, save_dir = wandb_home / "perf", wandb_home / "runs"
    threads_before = __import__("torch").get_num_threads()
    try:
        paths = main(["flops", "--quick", "--out", str(out), "--wandb-dir", str(save_dir)])
    finally:
        __import__("torch").set_num_threads(threads_before)
    logged = _single_run(save_dir)
    assert (logged["name"], logged["group"], logged["job_type"]) == ("perf-flops-cpu", "perf", "perf")
    assert logged["config"]["suite"] == "flops" and logged["config"]["quick"] is True
    artifact = next(a for a in logged["artifacts"] if a["type"] == "perf-results")
    assert {p.name for p in paths} | {"summary.json"} <= set(artifact["files"])
    assert any(isinstance(v, float) for k, v in logged["summary"].items() if not k.startswith("_"))
