"""One benchmark harness: every perf suite times, stamps, measures memory and writes rows through
``egakit.perf.common``, with one key spelling that ``egakit.perf.kernels`` reads without guessing."""
import json
import re
from pathlib import Path

import pytest
import torch

from egakit.perf import common, kernels
from egakit.perf.migrate_result_keys import RENAMED, normalise_report, normalise_row

PERF = Path(common.__file__).resolve().parent
#: calls that belong to the harness alone (timers, device memory counters, load, git stamp, /proc)
HARNESS_CALLS = re.compile(r"perf_counter\(|do_bench\(|max_memory_allocated\(|reset_peak_memory_stats\("
                           r"|getloadavg\(|git_state\(|/proc/self")


def test_only_the_harness_times_and_measures():
    offenders = []
    for path in sorted(PERF.glob("*.py")):
        if path.name == "common.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if HARNESS_CALLS.search(code) and "``" not in code:  # docstrings quote the method in ``…``
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "timing / memory / environment code outside perf/common.py:\n  " + "\n  ".join(offenders)


def test_time_interleaved_warms_up_then_takes_the_median_of_rounds():
    calls = {"a": 0, "b": 0}

    def count(name):
        def fn():
            calls[name] += 1
        return fn

    timings = common.time_interleaved({"a": count("a"), "b": count("b")}, warmup=2, repeats=5)
    assert calls == {"a": 7, "b": 7}
    for timing in timings.values():
        assert timing["repeats"] == 5 and len(timing["times_s"]) == 5
        assert timing["min_s"] <= timing["median_s"]


def test_time_fn_cpu_warmup_and_repeats():
    calls = []
    timing = common.time_fn(lambda: calls.append(1), warmup=3, repeats=4)
    assert len(calls) == 7 and timing["repeats"] == 4


def test_benchmark_row_has_the_one_spelling():
    timing = common.timing_of([0.002, 0.001, 0.004])
    row = common.benchmark_row(impl="torch", pass_name="forward", n=10, dtype="float32", timing=timing,
                               peak_memory_bytes=123, peak_memory_method="m", flops=4e6, traffic_bytes=2e6, extra=1)
    assert tuple(row)[: len(common.ROW_KEYS)] == common.ROW_KEYS
    assert row["median_s"] == 0.002 and row["min_s"] == 0.001
    assert row["gflops_per_s"] == pytest.approx(4e6 / 0.002 / 1e9)
    assert row["gb_per_s"] == pytest.approx(2e6 / 0.002 / 1e9)
    assert row["extra"] == 1


def test_sampled_rss_sees_a_large_temporary():
    size = 64 * 2**20
    with common.SampledRss(interval_s=1e-4) as probe:
        buffer = torch.ones(size // 4)
        buffer += 1  # touched pages, held for a while
        del buffer
    assert probe.bytes >= 0.5 * size, probe.bytes


def test_allocator_peak_counts_the_call_only():
    before = torch.ones(1 << 20)  # live before the call: not counted

    def step():
        x = torch.empty(1 << 18)  # 1 MiB
        del x

    assert common.allocator_peak_bytes(step) == 1 << 20
    del before


def test_both_kernel_benchmarks_write_rows_kernels_reads():
    """Tiny CPU runs of both benchmarks through the harness; the speedup reads their rows as written."""
    from egakit.perf import bench_cluster_aggregate, bench_slot_argmax

    slot = bench_slot_argmax.run("cpu", ns=(64,), dtypes=("float32",), repeats=1,
                                 implementations=("torch", "naive_eager"))
    cluster = bench_cluster_aggregate.run("cpu", ns=(256,), dtypes=("float32",), repeats=1,
                                          methods=("reference", "naive"), n_clusters=8)
    rows = [{"kernel": "slot_argmax", **r} for r in slot] + [{"kernel": "cluster_aggregate", **r} for r in cluster]
    for row in rows:
        assert set(common.ROW_KEYS) <= set(row), row
        assert not set(RENAMED) & set(row), row  # no old spelling is written any more
        assert row["median_s"] > 0 and row["peak_memory_bytes"] is not None
    details = kernels.speedup_details(rows)
    assert details["slot_argmax"]["kernel_impl"] == "torch" and details["slot_argmax"]["eager_impl"] == "naive_eager"
    assert details["cluster_aggregate"]["kernel_impl"] == "reference"
    assert details["cluster_aggregate"]["eager_impl"] == "naive"


def test_committed_kernel_results_use_the_one_spelling_and_reproduce_their_speedups():
    payload = json.loads((PERF / "results" / "kernels_cpu.json").read_text())
    for row in payload["rows"]:
        assert set(common.ROW_KEYS) <= set(row) and not set(RENAMED) & set(row), row
    assert kernels.speedups(payload["rows"]) == payload["kernel_speedup"]
    assert normalise_report(payload) == payload  # already migrated: the normaliser is idempotent


def test_normaliser_converts_old_spellings():
    old = {"method": "naive", "mode": "forward", "n": 10, "dtype": "float32", "time_ms": 2.5, "time_min_ms": 2.0,
           "gflops": 1.0, "gbps": 0.5, "peak_extra_mb": 1.5, "input_mb": 1.0, "device": "cpu"}
    new = normalise_row(old)
    assert new["impl"] == "naive" and new["pass"] == "forward"
    assert new["median_s"] == pytest.approx(2.5e-3) and new["min_s"] == pytest.approx(2e-3)
    assert new["peak_memory_bytes"] == int(1.5 * 2**20) and new["input_bytes"] == 2**20
    assert new["gflops_per_s"] == 1.0 and new["gb_per_s"] == 0.5
    assert set(common.ROW_KEYS) - {"repeats"} <= set(new)
    slot_old = {"impl": "torch", "pass": "forward", "median_ms": 1.0, "min_ms": 0.5, "gflop_per_s": 3.0}
    assert normalise_row(slot_old)["gflops_per_s"] == 3.0
    assert normalise_report({"results": [slot_old]})["rows"][0]["median_s"] == pytest.approx(1e-3)
