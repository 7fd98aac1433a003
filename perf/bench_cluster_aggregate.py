"""Benchmark of ``egakit.kernels.cluster_aggregate`` (Eq. 11; docs/design.md §4 and §10) — a benchmark, not a test.

Methods (each timed for ``forward`` and ``forward+backward``):

* ``triton``          the fused Triton kernels (CUDA only);
* ``reference``       the chunked torch reference (``backend="torch"``, the CPU production path);
* ``naive``           eager dense code: einsum → masked_fill → softmax over N → einsum;
* ``naive_compiled``  ``torch.compile`` of the same dense code.

``forward`` runs under ``torch.no_grad()`` (inference); ``forward+backward`` with gradients for
q, k, v and the centroids, cotangent ones.

Each row reports (keys of ``egakit.perf.common.ROW_KEYS``, built by ``common.benchmark_row``):

* ``median_s`` and ``min_s``. CUDA: ``triton.testing.do_bench`` (``common.time_fn``). CPU: one
  warm-up call of every method, then ``repeats`` rounds timing one call of each method in turn
  (``common.time_interleaved``: a change of load on a shared machine hits every method alike).
  On a shared CPU the minimum is the less noisy statistic.
* ``gflops_per_s``: the kernel's FLOP formula (8·B·H·N·N_c·d_h forward, 26·… forward+backward; see
  ``egakit.kernels.cluster_aggregate``) divided by the time — the same count for every method.
* ``gb_per_s``: unavoidable bytes / time. Forward: read q, k, v, centroids and mask once, write
  A_q, A_k, A_v. Forward+backward adds: read q, k, v, centroids, mask and dA once more, write dq,
  dk, dv and dC.
* ``peak_memory_bytes``: peak memory above what was allocated before the call (the inputs).
  CUDA: ``common.PeakMemory`` (``max_memory_allocated`` after ``reset_peak_memory_stats``, after a
  warm-up call). CPU: each method is probed in its own subprocess with
  ``MALLOC_MMAP_THRESHOLD_=65536`` (so freed buffers go back to the OS and the resident set follows
  live memory); after a warm-up call, ``common.SampledRss`` samples the resident set size every
  0.2 ms during one call, and the row reports the largest sample minus the sample taken just
  before. This is what the OS sees (allocator overhead and BLAS buffers included); a peak shorter
  than the sampling interval could be missed. For ``forward+backward`` it includes the gradients
  dq, dk, dv, dC (1× the q, k, v bytes), which any method must allocate.

``main()`` writes ``perf/results/kernels_cluster_aggregate_<device>.json`` with the device name,
torch / triton versions, git commit, thread count and load average (the CPU machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from egakit.perf import common
from egakit.perf.migrate_result_keys import normalise_report

REPO_ROOT = common.REPO_ROOT
RESULTS_DIR = common.DEFAULT_OUT
METHODS = ("triton", "reference", "naive", "naive_compiled")
MODES = ("forward", "forward+backward")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RSS_SAMPLE_SECONDS = 2e-4
#: How each device's rows measure peak memory (egakit.perf.common; CPU: in a fresh subprocess).
PEAK_METHOD = {"cuda": common.PeakMemory.CUDA_METHOD, "cpu": common.SampledRss.method}
CUDA_REP_SECONDS = 0.1  # do_bench's timing budget per row


# ----------------------------------------------------------------------------------------------
# The code being compared
# ----------------------------------------------------------------------------------------------
def naive_cluster_aggregate(q, k, v, centroids, mask):
    """Dense eager formula: (B, H, N, N_c) logits and P materialised."""
    logits = torch.einsum("bhnd,hcd->bhnc", k, centroids) / math.sqrt(q.shape[-1])
    logits = logits.masked_fill(~mask[:, None, :, None], float("-inf"))
    probs = torch.softmax(logits, dim=2)
    return tuple(torch.einsum("bhnc,bhnd->bhcd", probs, x) for x in (q, k, v))


def _method_fn(method: str):
    from egakit.kernels import cluster_aggregate

    if method == "triton":
        return lambda *a: cluster_aggregate(*a, backend="triton")
    if method == "reference":
        return lambda *a: cluster_aggregate(*a, backend="torch")
    if method == "naive":
        return naive_cluster_aggregate
    if method == "naive_compiled":
        return torch.compile(naive_cluster_aggregate)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


# ----------------------------------------------------------------------------------------------
# Inputs, FLOPs and bytes
# ----------------------------------------------------------------------------------------------
def make_inputs(device, dtype, batch, heads, n, head_dim, n_clusters, *, padding=0.05, seed=0):
    """q, k, v (B, H, N, d_h), centroids (H, N_c, d_h), mask (B, N) with the last ``padding``
    fraction of candidates masked (a padded batch)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen).to(device, dtype) for _ in range(3))
    centroids = torch.randn(heads, n_clusters, head_dim, generator=gen).to(device, dtype)
    mask = torch.ones(batch, n, dtype=torch.bool, device=device)
    mask[:, n - int(padding * n):] = False
    return q, k, v, centroids, mask


def useful_flops(mode, batch, heads, n, head_dim, n_clusters) -> int:
    from egakit.kernels import cluster_aggregate_backward_flops, cluster_aggregate_flops

    flops = cluster_aggregate_flops(batch, heads, n, n_clusters, head_dim)
    if mode == "forward+backward":
        flops += cluster_aggregate_backward_flops(batch, heads, n, n_clusters, head_dim)
    return flops


def unavoidable_bytes(mode, itemsize, batch, heads, n, head_dim, n_clusters) -> int:
    """Read q, k, v, centroids, mask once and write the outputs (see the module docstring)."""
    candidates = 3 * batch * heads * n * head_dim * itemsize
    clusters = 3 * batch * heads * n_clusters * head_dim * itemsize
    centroids = heads * n_clusters * head_dim * itemsize
    mask = batch * n
    forward = candidates + centroids + mask + clusters
    if mode == "forward":
        return forward
    backward = 2 * candidates + 2 * centroids + mask + clusters  # read x, C, mask, dA; write dx, dC
    return forward + backward


# ----------------------------------------------------------------------------------------------
# Timing and memory
# ----------------------------------------------------------------------------------------------
def _step(fn, inputs, mode):
    """One call of ``mode``; returns nothing (outputs and grads are dropped)."""
    q, k, v, centroids, mask = inputs
    if mode == "forward":
        with torch.no_grad():
            fn(q, k, v, centroids, mask)
        return
    leaves = (q, k, v, centroids)
    outputs = fn(*leaves, mask)
    torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    for leaf in leaves:
        leaf.grad = None


def _interleaved_times(fns: dict, inputs, mode, repeats) -> dict:
    """CPU timing through the shared harness (``egakit.perf.common.time_interleaved``): one warm-up
    call of each function, then ``repeats`` rounds timing one call of every function in turn.
    Returns {name: timing}."""
    return common.time_interleaved({name: (lambda fn=fn: _step(fn, inputs, mode)) for name, fn in fns.items()},
                                   warmup=1, repeats=repeats)


def _cuda_timing(fn, inputs, mode) -> dict:
    return common.time_fn(lambda: _step(fn, inputs, mode), device="cuda", max_seconds=CUDA_REP_SECONDS)


def _set_requires_grad(inputs, mode) -> None:
    for x in inputs[:4]:
        x.requires_grad_(mode == "forward+backward")


def peak_extra_bytes(method, device, n, dtype, *, batch=1, heads=4, head_dim=32, n_clusters=128) -> dict:
    """{mode: peak bytes above the inputs} for one method, in this process (see module docstring;
    on CPU call it in a fresh process: ``_peak_in_subprocess``)."""
    inputs = make_inputs(device, DTYPES[dtype], batch, heads, n, head_dim, n_clusters)
    fn = _method_fn(method)
    peaks = {}
    for mode in MODES:
        _set_requires_grad(inputs, mode)
        _step(fn, inputs, mode)  # warm-up: compilation, autotuning, thread pools happen here
        probe = common.PeakMemory("cuda") if device == "cuda" else common.SampledRss(RSS_SAMPLE_SECONDS)
        with probe:
            _step(fn, inputs, mode)
        peaks[mode] = probe.bytes
    return peaks


def _peak_in_subprocess(method, device, n, dtype, **shape) -> dict:
    """``peak_extra_bytes`` in a fresh interpreter with mmap'd allocations, so each method's memory
    is measured on its own heap and freed buffers leave the resident set."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(REPO_ROOT))
    request = json.dumps(dict(method=method, device=device, n=n, dtype=dtype, **shape))
    result = subprocess.run(
        [sys.executable, "-m", "egakit.perf.bench_cluster_aggregate", "--probe-memory", request,
         "--threads", str(torch.get_num_threads())],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory probe of {method} N={n} {dtype} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _row(method, device, dtype, mode, timing, peak_bytes, input_bytes, shape) -> dict:
    item = torch.finfo(DTYPES[dtype]).bits // 8
    return common.benchmark_row(
        impl=method, pass_name=mode, n=shape["n"], dtype=dtype, timing=timing,
        peak_memory_bytes=peak_bytes, peak_memory_method=PEAK_METHOD[device],
        flops=useful_flops(mode, **shape), traffic_bytes=unavoidable_bytes(mode, item, **shape),
        device=device, **{k: v for k, v in shape.items() if k != "n"},
        input_bytes=input_bytes, peak_over_input=peak_bytes / input_bytes,
        threads=torch.get_num_threads() if device != "cuda" else None,
    )


def measure(device, n, dtype, methods, *, repeats=5, batch=1, heads=4, head_dim=32, n_clusters=128) -> list[dict]:
    """Rows for every method × mode at one (N, dtype)."""
    shape = dict(batch=batch, heads=heads, n=n, head_dim=head_dim, n_clusters=n_clusters)
    memory_shape = dict(batch=batch, heads=heads, head_dim=head_dim, n_clusters=n_clusters)
    probe = peak_extra_bytes if device == "cuda" else _peak_in_subprocess
    peaks = {method: probe(method, device, n, dtype, **memory_shape) for method in methods}
    inputs = make_inputs(device, DTYPES[dtype], batch, heads, n, head_dim, n_clusters)
    input_bytes = sum(x.numel() * x.element_size() for x in inputs)
    fns = {method: _method_fn(method) for method in methods}
    rows = []
    for mode in MODES:
        _set_requires_grad(inputs, mode)
        if device == "cuda":
            times = {method: _cuda_timing(fn, inputs, mode) for method, fn in fns.items()}
        else:
            times = _interleaved_times(fns, inputs, mode, repeats)
        for method in methods:
            timing = {k: v for k, v in times[method].items() if k != "times_s"}
            rows.append(_row(method, device, dtype, mode, timing, peaks[method][mode], input_bytes, shape))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def run(device="cpu", ns=(1000, 10000, 100000), dtypes=("float32", "bfloat16"), repeats=5, *,
        methods=None, batch=1, heads=4, head_dim=32, n_clusters=128, threads=None) -> list[dict]:
    """Time and measure every method × N × dtype × mode; ``triton`` runs on CUDA only.
    ``threads`` sets torch's CPU threads (default: torch's own choice)."""
    if threads:
        torch.set_num_threads(threads)
    methods = tuple(m for m in (methods or METHODS) if device == "cuda" or m != "triton")
    rows = []
    for dtype in dtypes:
        for n in ns:
            rows.extend(measure(device, n, dtype, methods, repeats=repeats, batch=batch, heads=heads,
                                head_dim=head_dim, n_clusters=n_clusters))
    return rows


def sweep_reference_chunks(device="cpu", n=100_000, rows_options=(256, 512, 1024, 2048, 4096, 8192),
                           repeats=5, batch=1, heads=4, head_dim=32, n_clusters=128) -> list[dict]:
    """Time of the torch reference per chunk size (rows of N), chunk sizes interleaved."""
    from egakit.kernels import cluster_aggregate_torch

    inputs = make_inputs(device, torch.float32, batch, heads, n, head_dim, n_clusters)
    fns = {rows: (lambda *a, rows=rows: cluster_aggregate_torch(*a, chunk_rows=rows)) for rows in rows_options}
    results = []
    for mode in MODES:
        _set_requires_grad(inputs, mode)
        times = _interleaved_times(fns, inputs, mode, repeats)
        for rows, timing in times.items():
            results.append({"chunk_rows": rows, "chunk_elements": batch * heads * rows * n_clusters, "pass": mode,
                            "median_s": timing["median_s"], "min_s": timing["min_s"]})
            print(json.dumps(results[-1]), flush=True)
    return results


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    """The shared environment stamp (egakit.perf.common.environment) plus what this benchmark sets."""
    return common.environment(device, cpu_count=os.cpu_count(),
                              float32_matmul_precision=torch.get_float32_matmul_precision())


def main(argv=None) -> Path | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ns", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--chunk-sweep", action="store_true", help="also time the reference per chunk size")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of an existing --out file that this run does not re-measure")
    parser.add_argument("--probe-memory", help=argparse.SUPPRESS)  # subprocess worker: JSON request
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe_memory:
        print(json.dumps(peak_extra_bytes(**json.loads(args.probe_memory))))
        return None

    out = args.out or RESULTS_DIR / f"kernels_cluster_aggregate_{args.device}.json"
    this_run = environment(args.device)
    this_run["config"] = {"batch": 1, "heads": 4, "head_dim": 32, "n_clusters": 128, "padding": 0.05,
                          "ns": args.ns, "dtypes": args.dtypes, "repeats": args.repeats,
                          "methods": args.methods, "chunk_sweep": args.chunk_sweep}
    started = time.time()
    rows = run(args.device, tuple(args.ns), tuple(args.dtypes), args.repeats, methods=args.methods)
    sweep = sweep_reference_chunks(args.device, repeats=args.repeats) if args.chunk_sweep else None
    this_run["load_average_1m_after"] = common.load_average_1m()
    this_run["wall_seconds"] = round(time.time() - started, 1)

    report = {"benchmark": "egakit.kernels.cluster_aggregate", **this_run, "runs": [this_run], "rows": rows}
    if args.merge and out.exists():
        report = _merged(normalise_report(json.loads(out.read_text())), report)  # older files: old key spellings
    if sweep is not None:
        report["reference_chunk_sweep"] = sweep
    common.write_json(out, report)
    print(f"wrote {out}")
    return out


def _runs_of(report: dict) -> list[dict]:
    """The environments of the runs behind ``report`` (a report without ``runs`` is one run)."""
    return report.get("runs") or [{k: v for k, v in report.items() if k not in ("rows", "reference_chunk_sweep")}]


def _merged(old: dict, new: dict) -> dict:
    """``new`` plus the rows (and chunk sweep) of ``old`` that ``new`` did not re-measure; ``runs``
    lists the environment of every run that contributed."""
    key = lambda row: (row["impl"], row["dtype"], row["n"], row["pass"])
    measured = {key(row) for row in new["rows"]}
    merged = dict(new)
    merged["rows"] = [row for row in old.get("rows", []) if key(row) not in measured] + new["rows"]
    merged["runs"] = _runs_of(old) + _runs_of(new)
    if "reference_chunk_sweep" in old:
        merged["reference_chunk_sweep"] = old["reference_chunk_sweep"]
    return merged


if __name__ == "__main__":
    main()
