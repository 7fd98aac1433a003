"""``python -m egakit.perf latency``: time and peak memory of full V1 inference and of each block over N.

Points. For each block of :data:`BLOCKS` and each mode (``forward``: eval mode under no_grad;
``train``: forward + backward), over N ∈ {10^3, 3·10^3, 10^4, 3·10^4, 10^5} (B = 1): the whole
model is ``EGAV1.allocate`` (inference per request) and a pre-training step; the blocks are the
modules of :func:`egakit.perf.flops_suite.build_case`. The evaluator and the payment network see the K
winners only, so they are measured once (at the smallest N).

Each (block, mode) series runs in a **fresh subprocess** (``python -m egakit.perf.latency --series JSON``),
N ascending:

1. a tiny warm-up at N = 64 (lazy allocations, thread pools, kernel caches);
2. per N, the point's inputs are built, then one counted call runs under FlopCounterMode (FLOPs,
   with the kernels' registered formulas) and :class:`egakit.perf.common.OpTraffic` (bytes) while
   :class:`egakit.perf.common.PeakMemory` records the peak above the resident memory at its start (CPU:
   free heap pages trimmed and the kernel's peak-RSS mark reset first; the inputs and the weights
   are in the baseline, so it is the working memory of the call);
3. timing: a warm-up call (skipped when the counted call already took more than a quarter of the
   point's time budget) and up to ``repeats`` timed calls within ``point_seconds``; the median is
   reported (and the minimum, which is steadier on a shared machine).

Per block and mode, the growth exponents of time and memory in N are least-squares fits on log-log
axes, over all N and over the three largest N (where fixed costs such as the L-behaviour stack
matter least). Achieved GFLOP/s and GB/s are compared with the machine's fp32 matmul peak and copy
bandwidth measured in the same run (before and after the sweep; the better of the two is the roof).

A point whose predicted peak memory or time per call (linear extrapolation in N of the previous
two points) exceeds ``max_memory_gb`` (6 GiB) or ``max_call_seconds`` (300 s) is skipped and marked
so in the JSON (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Optional

import torch

from egakit.perf import common
from egakit.perf.flops_suite import N_INDEPENDENT
from egakit.perf.workload import QUICK_NS, SWEEP_NS, Workload, default_workload, workload

#: (module of egakit.perf.flops_suite, modes); "ega_v1" = allocate (forward) / pre-training step (train).
BLOCKS = (
    ("ega_v1", ("forward", "train")),
    ("feature_embedding", ("forward", "train")),
    ("gcf_layer", ("forward", "train")),
    ("mif_exchange", ("forward", "train")),
    ("ctr_head", ("forward", "train")),
    ("generator", ("forward", "train")),
    ("evaluator", ("forward", "train")),
    ("payment", ("forward", "train")),
)
QUICK_BLOCKS = (("ega_v1", ("forward", "train")), ("gcf_layer", ("forward",)))
WARMUP_N = 64
POINT_SECONDS = 30.0
QUICK_POINT_SECONDS = 2.0
REPEATS = {"cpu": 5, "cuda": 50}
MAX_MEMORY_GB = 6.0
MAX_CALL_SECONDS = 300.0
SUBPROCESS_TIMEOUT_S = 1800
LARGE_N_POINTS = 3


# ---------------------------------------------------------------------------------------------
# One series of points (runs in its own process)
# ---------------------------------------------------------------------------------------------
def measure_point(spec: dict[str, Any], n: int) -> dict[str, Any]:
    """Measure one (block, mode, N) point in this process; see the module docstring."""
    from egakit.perf.flops_suite import build_case, flop_counter

    device = spec["device"]
    w = workload(spec["workload"])
    block, mode = spec["block"], spec["mode"]
    case = build_case(block, w, n, mode, device)
    common.synchronize(device)
    with common.PeakMemory(device) as memory, common.OpTraffic() as traffic, flop_counter() as counter:
        counted_s = common.time_once(case.run, device=device)
    budget = spec["point_seconds"]
    warmup = 0 if counted_s > budget / 4 else 1
    timing = common.time_fn(case.run, device=device, warmup=warmup, repeats=spec["repeats"], max_seconds=budget)
    return {
        "block": case.name, "module": block, "mode": mode, "N": n, "status": "ok",
        **timing, "counted_call_s": counted_s,
        "flops": int(counter.get_total_flops()), "formula_flops": case.formula, "traffic_bytes": traffic.bytes,
        "dispatched_ops": traffic.ops, "peak_memory_bytes": memory.bytes, "memory_method": memory.method,
    }


def measure_series(spec: dict[str, Any]) -> None:
    """All N of one (block, mode) in ascending order, one JSON line per point on stdout.

    A tiny warm-up first (N = 64); a point whose predicted memory or time exceeds the limits is
    skipped (module docstring), and so are the larger ones after it.
    """
    from egakit.perf.flops_suite import build_case

    torch.set_num_threads(spec["threads"])
    w = workload(spec["workload"])
    build_case(spec["block"], w, WARMUP_N, spec["mode"], spec["device"]).run()
    done: list[dict[str, Any]] = []
    for n in sorted(spec["ns"]):
        reason = _skip_reason(done, n, spec)
        if reason:
            result = {"block": spec["block"], "module": spec["block"], "mode": spec["mode"], "N": n, "status": reason}
        else:
            result = measure_point(spec, n)
            done.append(result)
        print(json.dumps(result), flush=True)


def _skip_reason(done: list[dict[str, Any]], n: int, spec: dict[str, Any]) -> Optional[str]:
    mem = _predict(done, "peak_memory_bytes", n)
    secs = _predict(done, "median_s", n)
    if mem is not None and mem > spec["max_memory_gb"] * 2**30:
        return f"skipped: predicted peak memory {mem / 2**30:.1f} GiB > {spec['max_memory_gb']} GiB"
    if secs is not None and secs > spec["max_call_seconds"]:
        return f"skipped: predicted {secs:.0f} s per call > {spec['max_call_seconds']:.0f} s"
    return None


def run_series(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Run :func:`measure_series` in a fresh subprocess; N values without a result are marked failed."""
    cmd = [sys.executable, "-m", "egakit.perf.latency", "--series", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    try:
        proc = subprocess.run(cmd, cwd=common.REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=SUBPROCESS_TIMEOUT_S)
        stdout, failure = proc.stdout, None if proc.returncode == 0 else f"rc {proc.returncode}"
        stderr = proc.stderr
    except subprocess.TimeoutExpired as timeout:
        stdout = timeout.stdout.decode() if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")
        stderr, failure = "", f"timeout after {SUBPROCESS_TIMEOUT_S} s"
    points = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    measured = {p["N"] for p in points}
    tail = " | ".join((stderr or "").strip().splitlines()[-3:])
    for n in spec["ns"]:
        if n not in measured:
            points.append({"block": spec["block"], "module": spec["block"], "mode": spec["mode"], "N": n,
                           "status": f"failed ({failure or 'no result'}): {tail}"})
    return sorted(points, key=lambda p: p["N"])


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------
def _predict(points: list[dict[str, Any]], key: str, n: int) -> Optional[float]:
    """Linear extrapolation in N of ``key`` from the last two measured points (None if < 2)."""
    done = [p for p in points if p.get("status") == "ok" and p.get(key)]
    if len(done) < 2:
        return None
    (n0, y0), (n1, y1) = [(p["N"], p[key]) for p in done[-2:]]
    slope = (y1 - y0) / (n1 - n0) if n1 != n0 else 0.0
    return max(y1, y1 + slope * (n - n1))


def fits(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth exponents of time and memory in N for one block/mode (all N, and the largest N)."""
    ok = sorted((p for p in points if p.get("status") == "ok"), key=lambda p: p["N"])
    ns = [p["N"] for p in ok]
    times = [p["median_s"] for p in ok]
    mems = [p["peak_memory_bytes"] for p in ok]
    tail = slice(-LARGE_N_POINTS, None)
    return {
        "time": common.fit_power_law(ns, times),
        "time_large_n": common.fit_power_law(ns[tail], times[tail]),
        "memory": common.fit_power_law(ns, mems),
        "memory_large_n": common.fit_power_law(ns[tail], mems[tail]),
    }


def run(
    device: str = "cpu",
    *,
    quick: bool = False,
    paper_config: bool = False,
    ns: Optional[tuple[int, ...]] = None,
    blocks: Optional[tuple[str, ...]] = None,
    repeats: Optional[int] = None,
    point_seconds: Optional[float] = None,
    max_memory_gb: float = MAX_MEMORY_GB,
    max_call_seconds: float = MAX_CALL_SECONDS,
    threads: Optional[int] = None,
) -> dict[str, Any]:
    """The whole sweep; returns the JSON payload (module docstring)."""
    w: Workload = default_workload(device, paper=paper_config, quick=quick)
    ns = tuple(sorted(ns or (QUICK_NS if quick else SWEEP_NS)))
    plan = QUICK_BLOCKS if quick else BLOCKS
    if blocks:
        plan = tuple((b, modes) for b, modes in BLOCKS if b in blocks)
    threads = threads or torch.get_num_threads()
    spec_base = {
        "device": device, "workload": w.name, "threads": threads,
        "repeats": repeats or (1 if quick else REPEATS[device]),
        "point_seconds": point_seconds or (QUICK_POINT_SECONDS if quick else POINT_SECONDS),
        "max_memory_gb": max_memory_gb, "max_call_seconds": max_call_seconds,
    }
    peaks_start = common.machine_peaks(device, quick=quick)
    points: list[dict[str, Any]] = []
    for block, modes in plan:
        block_ns = ns[:1] if block in N_INDEPENDENT else ns
        for mode in modes:
            series = run_series({**spec_base, "block": block, "mode": mode, "ns": list(block_ns)})
            for point in series:
                common.log(_describe(point))
            points.extend(series)
    peaks_end = common.machine_peaks(device, quick=quick)
    peaks = _best_peaks(peaks_start, peaks_end)
    for p in points:
        if p.get("status") == "ok":
            p.update(common.roofline_fractions(p["flops"], p["traffic_bytes"], p["median_s"], peaks))
    series_fits = {}
    for p in points:
        key = f"{p['block']}/{p['mode']}"
        if key not in series_fits:
            series_fits[key] = fits([q for q in points if q["block"] == p["block"] and q["mode"] == p["mode"]])
    inference = series_fits.get("ega_v1_allocate/forward", {})
    return {
        "suite": "latency",
        "environment": common.environment(device),
        "workload": w.describe(),
        "method": {
            "batch": "B = 1 request, all N candidates and L behaviours valid",
            "timing": "CPU: warm-up then the median of repeats (time.perf_counter); CUDA: triton do_bench median",
            "memory": "CPU: peak RSS (getrusage ru_maxrss) above the pre-call baseline, one fresh process per point; "
                      "CUDA: max_memory_allocated above the pre-call allocation",
            "flops": "FlopCounterMode on the counted call (ega:: kernels by their registered formulas)",
            "traffic": "sum of input + output bytes of every non-view dispatched op (unfused eager traffic)",
            "roofs": "fp32 matmul and copy bandwidth measured before and after the sweep; the better of the two",
            "threads": threads,
        },
        "ns": list(ns),
        "peaks": {"start": peaks_start, "end": peaks_end, "used": peaks},
        "points": points,
        "fits": series_fits,
        "inference_growth_exponent": (inference.get("time") or {}).get("exponent"),
        "inference_growth_exponent_large_n": (inference.get("time_large_n") or {}).get("exponent"),
        "inference_memory_exponent": (inference.get("memory") or {}).get("exponent"),
    }


def _best_peaks(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    best = {}
    for key in a:
        metric = "gb_per_s" if key == "copy" else "gflops_per_s"
        best[key] = a[key] if a[key][metric] >= b[key][metric] else b[key]
    return best


def _describe(p: dict[str, Any]) -> str:
    head = f"[latency] {p['block']:<22} {p['mode']:<7} N={p['N']:>7}"
    if p.get("status") != "ok":
        return f"{head} {p.get('status')}"
    mem = p["peak_memory_bytes"] / 2**20 if p["peak_memory_bytes"] is not None else float("nan")
    return f"{head} {p['median_s'] * 1e3:10.2f} ms  (x{p['repeats']})  peak +{mem:8.1f} MiB  {p['flops'] / 1e9:9.3f} GFLOP"


def print_report(payload: dict[str, Any]) -> None:
    print(f"Latency ({payload['environment']['device_name']}, {payload['workload']['name']} config, "
          f"{payload['method']['threads']} thread(s)):")
    peaks = payload["peaks"]["used"]
    print(f"  roofs: fp32 matmul {peaks['matmul_fp32']['gflops_per_s']:.1f} GFLOP/s, "
          f"copy {peaks['copy']['gb_per_s']:.1f} GB/s")
    fmt = lambda x: "  n/a" if x is None else f"{x:5.2f}"  # noqa: E731
    for key, fit in payload["fits"].items():
        t, tl, m = fit["time"]["exponent"], fit["time_large_n"]["exponent"], fit["memory"]["exponent"]
        if fit["time"]["points"] < 2:
            block, mode = key.split("/")
            only = [p for p in payload["points"] if p["block"] == block and p["mode"] == mode and p.get("status") == "ok"]
            if only:
                print(f"  {key:<36} N-independent: {only[0]['median_s'] * 1e3:.2f} ms at N = {only[0]['N']}")
            continue
        print(f"  {key:<36} time ~ N^{fmt(t)} (largest N: N^{fmt(tl)})  memory ~ N^{fmt(m)}")
    for p in payload["points"]:
        if p.get("status") != "ok" and not str(p.get("status")).startswith("ok"):
            print(f"  {p['block']}/{p['mode']} N={p['N']}: {p['status']}")
    for p in payload["points"]:
        if p.get("status") == "ok" and p["block"] == "ega_v1_allocate":
            print(f"  allocate N={p['N']:>7}: {p['median_s'] * 1e3:9.1f} ms, "
                  f"{p['gflops_per_s']:.2f} GFLOP/s ({p['fraction_of_matmul_peak']:.1%} of matmul peak), "
                  f"{p['gb_per_s']:.2f} GB/s ({p['fraction_of_copy_bandwidth']:.1%} of copy bandwidth)")


def main(argv: Optional[list[str]] = None) -> None:
    """Internal entry point of the series subprocess: ``python -m egakit.perf.latency --series JSON``
    (the suite itself runs through ``python -m egakit.perf latency``)."""
    parser = argparse.ArgumentParser(prog="python -m egakit.perf.latency", description=main.__doc__.splitlines()[0])
    parser.add_argument("--series", required=True, help="one series as JSON; prints one JSON line per point")
    measure_series(json.loads(parser.parse_args(argv).series))


if __name__ == "__main__":
    main()
