"""Rewrite kernel-benchmark rows written before the shared harness into its one key spelling.

Before ``egakit.perf.common.benchmark_row``, the two kernel benchmarks spelled the same columns
differently (``method`` / ``impl``, ``mode`` / ``pass``, ``time_ms`` / ``median_ms``, ...), and
``egakit.perf.kernels`` guessed among the spellings. This is the one normaliser: it was run once
on the committed ``perf/results/kernels_*.json`` and ``bench_cluster_aggregate --merge`` runs an
older file's rows through it. Times become seconds, sizes bytes; values are otherwise unchanged
(a size stored rounded to 0.01 MiB stays that precise).

    python -m egakit.perf.migrate_result_keys perf/results/kernels_cpu.json [...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from egakit.perf.common import PeakMemory, SampledRss

MIB = 2**20

#: old key → (new key, conversion of the value)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "method": ("impl", lambda v: v),
    "mode": ("pass", lambda v: v),
    "time_ms": ("median_s", lambda v: v * 1e-3),
    "median_ms": ("median_s", lambda v: v * 1e-3),
    "time_min_ms": ("min_s", lambda v: v * 1e-3),
    "min_ms": ("min_s", lambda v: v * 1e-3),
    "gflops": ("gflops_per_s", lambda v: v),
    "gflop_per_s": ("gflops_per_s", lambda v: v),
    "gbps": ("gb_per_s", lambda v: v),
    "peak_extra_mb": ("peak_memory_bytes", lambda v: None if v is None else int(round(v * MIB))),
    "input_mb": ("input_bytes", lambda v: None if v is None else int(round(v * MIB))),
    "peak_extra_over_input": ("peak_over_input", lambda v: v),
}


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every old key of :data:`RENAMED` renamed (and converted); new keys kept."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        new_key, convert = RENAMED.get(key, (key, lambda v: v))
        if new_key in row and new_key != key:
            continue  # both spellings present: the new one wins
        out[new_key] = convert(value)
    if "peak_extra_mb" in row and "peak_memory_method" not in row:
        out["peak_memory_method"] = PeakMemory.CUDA_METHOD if row.get("device") == "cuda" else SampledRss.method
    return out


def normalise_report(report: dict[str, Any]) -> dict[str, Any]:
    """A kernel report with its ``rows`` (``results`` in the slot_argmax benchmark's old files)
    and ``reference_chunk_sweep`` rows normalised; a row without ``repeats`` takes the report's
    (``workload.repeats``, what ``egakit.perf.kernels`` ran every benchmark with)."""
    out = dict(report)
    if "results" in out and "rows" not in out:
        out["rows"] = out.pop("results")
    for key in ("rows", "reference_chunk_sweep"):
        if key in out:
            out[key] = [normalise_row(r) for r in out[key]]
    repeats = (out.get("workload") or {}).get("repeats")
    if repeats is not None:
        out["rows"] = [{**r, "repeats": r.get("repeats", repeats)} for r in out.get("rows", [])]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.paths:
        report = json.loads(path.read_text())
        path.write_text(json.dumps(normalise_report(report), indent=2) + "\n")
        print(f"rewrote {path}")


if __name__ == "__main__":
    main()
