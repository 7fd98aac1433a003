"""``python -m egakit.perf kernels``: the fused kernels' own benchmarks, merged into one JSON.

Calls ``run(device, ns, dtypes, repeats) -> list[dict]`` of :mod:`egakit.perf.bench_cluster_aggregate`
and :mod:`egakit.perf.bench_slot_argmax` (owned by the kernels' authors), tags every row with its kernel
and derives ``kernel_speedup`` = eager time / kernel time per kernel at the largest N (fp32,
forward), the number the summary reports (:func:`speedup_details` says which rows it used).

Both benchmarks write their rows through the shared harness (``egakit.perf.common.benchmark_row``),
so every row has the same keys (:data:`egakit.perf.common.ROW_KEYS`: ``impl``, ``pass``, ``n``,
``dtype``, ``median_s``, ...); the implementations are told apart by name (:data:`EAGER_NAMES`,
:data:`KERNEL_NAMES`). A benchmark that is missing or fails is recorded as such in the JSON
(``benchmarks[<kernel>].status``), never silently dropped.
"""
from __future__ import annotations

import importlib
import traceback
from typing import Any, Optional


from egakit.perf import common
from egakit.perf.workload import QUICK_NS, SWEEP_NS

BENCHMARKS = {"cluster_aggregate": "egakit.perf.bench_cluster_aggregate", "slot_argmax": "egakit.perf.bench_slot_argmax"}
#: Implementation names: the eager baseline contains one of EAGER_NAMES; the kernel is the first
#: of KERNEL_NAMES present (Triton on CUDA, else the kernels' torch path: ``torch`` for
#: slot_argmax, ``reference`` for cluster_aggregate).
EAGER_NAMES = ("eager", "naive")
KERNEL_NAMES = ("triton", "torch", "reference")
DTYPES = {"cpu": ("float32",), "cuda": ("float32", "bfloat16")}  # names: what both benchmarks take
REPEATS = {"cpu": 3, "cuda": 50}


def row_seconds(row: dict[str, Any]) -> Optional[float]:
    """A row's median time in seconds (None when it has none)."""
    seconds = row.get("median_s")
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _label(row: dict[str, Any]) -> str:
    parts = [row.get("kernel", "?"), row["impl"], row["pass"], str(row["dtype"])]
    return "/".join(p for p in parts if p)


def _impl(row: dict[str, Any]) -> str:
    return str(row["impl"]).lower()


def speedup_details(rows: list[dict[str, Any]]) -> dict[str, Optional[dict[str, Any]]]:
    """Per kernel: eager time / kernel time at its largest N, on fp32 forward rows when there are.

    Eager = the row whose implementation name contains one of :data:`EAGER_NAMES` (not a
    ``compile`` row: ``naive_compiled`` is torch.compile of the eager code); kernel = the
    first implementation of :data:`KERNEL_NAMES` present (Triton on CUDA; on CPU the kernels'
    torch path, the CPU production path), never a ``compile`` row. A row's own ``speedup`` field
    is not used: the ratio is recomputed from the times so both kernels are read the same way.
    """
    out: dict[str, Optional[dict[str, Any]]] = {}
    for kernel in BENCHMARKS:
        mine = [r for r in rows if r.get("kernel") == kernel and row_seconds(r) is not None]
        fp32 = [r for r in mine if r["dtype"] == "float32"] or mine
        forward = [r for r in fp32 if r["pass"] == "forward"] or fp32
        if not forward:
            out[kernel] = None
            continue
        n_max = max(r["n"] for r in forward)
        at_n = [r for r in forward if r["n"] == n_max]
        eager = [r for r in at_n if any(e in _impl(r) for e in EAGER_NAMES) and "compile" not in _impl(r)]
        fused = []
        for name in KERNEL_NAMES:
            fused = [r for r in at_n if name in _impl(r) and "compile" not in _impl(r)
                     and not any(e in _impl(r) for e in EAGER_NAMES)]
            if fused:
                break
        if not eager or not fused:
            out[kernel] = None
            continue
        e, k = min(eager, key=row_seconds), min(fused, key=row_seconds)
        out[kernel] = {"speedup": row_seconds(e) / row_seconds(k), "N": n_max, "dtype": e["dtype"],
                       "pass": e["pass"], "eager_impl": _impl(e), "kernel_impl": _impl(k),
                       "eager_s": row_seconds(e), "kernel_s": row_seconds(k)}
    return out


def speedups(rows: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """``{kernel: eager time / kernel time}`` from :func:`speedup_details`."""
    return {k: (v or {}).get("speedup") for k, v in speedup_details(rows).items()}


def run(device: str = "cpu", *, quick: bool = False, repeats: Optional[int] = None) -> dict[str, Any]:
    """Run both kernel benchmarks and merge their rows (module docstring)."""
    ns = list(QUICK_NS[:2] if quick else SWEEP_NS)
    dtypes = list(DTYPES[device][:1] if quick else DTYPES[device])
    reps = repeats or (1 if quick else REPEATS[device])
    rows: list[dict[str, Any]] = []
    status: dict[str, Any] = {}
    for kernel, module_name in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            status[kernel] = {"module": module_name, "status": f"missing: {error}"}
            common.log(f"[kernels] {kernel}: {module_name} not importable ({error})")
            continue
        try:
            got = module.run(device, ns, dtypes, reps)
        except Exception as error:  # a failing benchmark is reported, the other still runs
            status[kernel] = {"module": module_name, "status": f"failed: {type(error).__name__}: {error}",
                              "traceback": traceback.format_exc(limit=5)}
            common.log(f"[kernels] {kernel}: failed ({error})")
            continue
        status[kernel] = {"module": module_name, "status": "ok", "rows": len(got)}
        rows.extend({"kernel": kernel, **row} for row in got)
        common.log(f"[kernels] {kernel}: {len(got)} rows")
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        seconds = row_seconds(r)
        if seconds is not None:
            series.setdefault(_label(r), []).append((float(r["n"]), seconds * 1e3))
    return {
        "suite": "kernels",
        "environment": common.environment(device),
        "workload": {"name": "kernels", "ns": ns, "dtypes": dtypes,
                     "repeats": reps},
        "benchmarks": status,
        "rows": rows,
        "series": series,
        "kernel_speedup": speedups(rows),
        "kernel_speedup_details": speedup_details(rows),
    }


def print_report(payload: dict[str, Any]) -> None:
    print("Kernel benchmarks:")
    for kernel, info in payload["benchmarks"].items():
        print(f"  {kernel}: {info['status']}")
    for kernel, speedup in payload["kernel_speedup"].items():
        print(f"  {kernel}: eager / kernel = " + ("n/a" if speedup is None else f"{speedup:.2f}x"))
