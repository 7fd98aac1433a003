"""``perf/results/summary.json``: the headline numbers of the suites that have run on a device.

Required keys (the README and CI read them): ``device``, ``commit``, ``inference_growth_exponent``
(time of ``EGAV1.allocate`` vs N, log-log least squares), ``kernel_speedup`` ({kernel: eager time /
kernel time}), ``flops_measured_over_formula`` ({module: FlopCounterMode / egakit.flops.model}).
Beside them: versions, the large-N exponent, memory exponent, achieved fractions of the machine's
peaks, the paper-claim verdicts, the EGA-V1 vs early-fusion comparison and which JSON each number
came from. A suite that has not run leaves its keys ``null``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from egakit.perf import common

REQUIRED_KEYS = ("device", "commit", "inference_growth_exponent", "kernel_speedup", "flops_measured_over_formula")
SUITES = ("flops", "latency", "kernels", "compare")


def _largest_allocate(latency: dict[str, Any]) -> Optional[dict[str, Any]]:
    points = [p for p in latency["points"] if p["block"] == "ega_v1_allocate" and p.get("status") == "ok"]
    return max(points, key=lambda p: p["N"]) if points else None


def build(out_dir: Path | str, device: str) -> dict[str, Any]:
    """Collect the summary from ``<out>/<suite>_<device>.json`` files."""
    found = {s: common.read_json(common.result_path(out_dir, s, device)) for s in SUITES}
    flops, latency, kernels, compare = (found[s] for s in SUITES)
    env = common.environment(device)
    summary: dict[str, Any] = {
        "device": device,
        "device_name": env["device_name"],
        "commit": env["commit"],
        "dirty": env["dirty"],
        "torch": env["torch"],
        "triton": env["triton"],
        "inference_growth_exponent": latency.get("inference_growth_exponent") if latency else None,
        "kernel_speedup": kernels.get("kernel_speedup") if kernels else None,
        "flops_measured_over_formula": flops.get("measured_over_formula") if flops else None,
        "sources": {s: str(common.result_path(out_dir, s, device).name) if found[s] else None for s in SUITES},
        "suite_commits": {s: (found[s] or {}).get("environment", {}).get("commit") for s in SUITES},
    }
    if latency:
        largest = _largest_allocate(latency)
        summary["latency"] = {
            "workload": latency["workload"]["name"],
            "threads": latency["method"]["threads"],
            "inference_growth_exponent_large_n": latency.get("inference_growth_exponent_large_n"),
            "inference_memory_exponent": latency.get("inference_memory_exponent"),
            "exponents": {k: {"time": v["time"]["exponent"], "time_large_n": v["time_large_n"]["exponent"],
                              "memory": v["memory"]["exponent"]} for k, v in latency["fits"].items()},
            "peaks": {"matmul_fp32_gflops_per_s": latency["peaks"]["used"]["matmul_fp32"]["gflops_per_s"],
                      "copy_gb_per_s": latency["peaks"]["used"]["copy"]["gb_per_s"]},
            "allocate_at_largest_N": None if largest is None else {
                k: largest.get(k) for k in ("N", "median_s", "min_s", "peak_memory_bytes", "flops", "gflops_per_s",
                                            "gb_per_s", "fraction_of_matmul_peak", "fraction_of_copy_bandwidth")
            },
        }
    if flops:
        summary["flops_all_within_tolerance"] = flops.get("all_within_tolerance")
        summary["kernel_ops_seen_by_counter"] = flops.get("kernel_ops_seen")
        summary["paper_claims"] = [
            {"claim": c["claim"], "holds": c["holds"], "ratios": c["ratios"], "verdict": c["verdict"]}
            for c in flops.get("claims", [])
        ]
    if compare:
        last = compare["rows"][-1] if compare["rows"] else None
        summary["compare"] = {
            "workload": compare["workload"]["name"],
            "crossover": compare["crossover"],
            "at_largest_N": None if last is None else {
                "N": last["N"], "time_s": last["time_s"], "time_source": last["time_source"],
                "flops_over_ega": last["flops_over_ega"],
            },
        }
    return summary


def write(out_dir: Path | str, device: str) -> Path:
    """Build and write ``<out>/summary_<device>.json`` and ``<out>/summary.json`` (the latest
    device's numbers); returns the latter."""
    summary = build(out_dir, device)
    missing = [k for k in REQUIRED_KEYS if k not in summary]
    if missing:
        raise KeyError(f"summary is missing {missing}")
    common.write_json(Path(out_dir) / f"summary_{device}.json", summary)
    return common.write_json(Path(out_dir) / "summary.json", summary)
