"""Benchmark of ``egakit.kernels.cluster_aggregate`` (Eq. 11; docs/design.md §4 and §10) — a benchmark, not a test.

Methods (each timed for ``forward`` and ``forward+backward``):

* ``triton``          the fused Triton kernels (CUDA only);
* ``reference``       the chunked torch reference (``backend="torch"``, the CPU production path);
* ``naive``           eager dense code: einsum → masked_fill → softmax over N → einsum;
* ``naive_compiled``  ``torch.compile`` of the same dense code.

``forward`` runs under ``torch.no_grad()`` (inference); ``forward+backward`` with gradients for
q, k, v and the centroids, cotangent ones.

Each row reports:

* ``time_ms`` (median) and ``time_min_ms``. CUDA: ``triton.testing.do_bench`` quantiles. CPU: one
  warm-up call of every method, then ``repeats`` rounds timing one call of each method in turn
  (interleaved, so a change of load on a shared machine hits every method alike). On a shared
  CPU the minimum is the less noisy statistic.
* ``gflops``: the kernel's FLOP formula (8·B·H·N·N_c·d_h forward, 26·… forward+backward; see
  ``egakit.kernels.cluster_aggregate``) divided by the time — the same count for every method.
* ``gbps``: unavoidable bytes / time. Forward: read q, k, v, centroids and mask once, write
  A_q, A_k, A_v. Forward+backward adds: read q, k, v, centroids, mask and dA once more, write dq,
  dk, dv and dC.
* ``peak_extra_mb``: peak memory above what was allocated before the call (the inputs).
  CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (after a warm-up
  call). CPU: each method is probed in its own subprocess with ``MALLOC_MMAP_THRESHOLD_=65536``
  (so freed buffers go back to the OS and the resident set follows live memory); after a warm-up
  call, a thread samples the resident set size (``/proc/self/statm``) every 0.2 ms during one
  call, and the row reports the largest sample minus the sample taken just before. This is what
  the OS sees (allocator overhead and BLAS buffers included); a peak shorter than the sampling
  interval could be missed. For ``forward+backward`` it includes the gradients dq, dk, dv, dC
  (1× the q, k, v bytes), which any method must allocate.

``main()`` writes ``perf/results/kernels_cluster_aggregate_<device>.json`` with the device name,
torch / triton versions, git commit, thread count and load average (the CPU machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from egakit.provenance import git_state
from egakit.perf.common import cpu_name

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "perf" / "results"
METHODS = ("triton", "reference", "naive", "naive_compiled")
MODES = ("forward", "forward+backward")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RSS_SAMPLE_SECONDS = 2e-4


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


def _interleaved_times_ms(fns: dict, inputs, mode, repeats) -> dict:
    """CPU timing: one warm-up call of each function, then ``repeats`` rounds that time one call
    of every function in turn, so a change of load on a shared machine hits all of them alike.
    Returns {name: [ms, ...]}."""
    for fn in fns.values():
        _step(fn, inputs, mode)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            _step(fn, inputs, mode)
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def _cuda_times_ms(fn, inputs, mode) -> list[float]:
    import triton.testing

    median, low = triton.testing.do_bench(lambda: _step(fn, inputs, mode), quantiles=[0.5, 0.0])
    return [median, low]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Samples the resident set size in a thread; ``extra`` = max sample − the sample at entry."""

    def __enter__(self):
        self.base = _rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(RSS_SAMPLE_SECONDS)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.extra = self.peak - self.base


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
        if device == "cuda":
            _step(fn, inputs, mode)  # compile / autotune outside the measurement
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            _step(fn, inputs, mode)
            torch.cuda.synchronize()
            peaks[mode] = torch.cuda.max_memory_allocated() - base
            continue
        _step(fn, inputs, mode)  # warm-up: one-off allocations (thread pools, compilation) happen here
        with _PeakRss() as probe:
            _step(fn, inputs, mode)
        peaks[mode] = probe.extra
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


def _row(method, device, dtype, mode, times_ms, peak_bytes, input_bytes, shape, repeats) -> dict:
    median_ms = statistics.median(times_ms) if device != "cuda" else times_ms[0]
    min_ms = min(times_ms)
    seconds = median_ms / 1e3
    item = torch.finfo(DTYPES[dtype]).bits // 8
    return {
        "method": method, "device": device, "dtype": dtype, "mode": mode, **shape,
        "time_ms": round(median_ms, 4), "time_min_ms": round(min_ms, 4),
        "gflops": round(useful_flops(mode, **shape) / seconds / 1e9, 3),
        "gbps": round(unavoidable_bytes(mode, item, **shape) / seconds / 1e9, 3),
        "peak_extra_mb": round(peak_bytes / 2**20, 2),
        "input_mb": round(input_bytes / 2**20, 2),
        "peak_extra_over_input": round(peak_bytes / input_bytes, 3),
        "threads": torch.get_num_threads() if device != "cuda" else None,
        "repeats": repeats if device != "cuda" else None,
    }


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
            times = {method: _cuda_times_ms(fn, inputs, mode) for method, fn in fns.items()}
        else:
            times = _interleaved_times_ms(fns, inputs, mode, repeats)
        for method in methods:
            rows.append(_row(method, device, dtype, mode, times[method], peaks[method][mode], input_bytes,
                             shape, repeats))
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
        times = _interleaved_times_ms(fns, inputs, mode, repeats)
        for rows, values in times.items():
            results.append({"chunk_rows": rows, "chunk_elements": batch * heads * rows * n_clusters, "mode": mode,
                            "time_ms": round(statistics.median(values), 3), "time_min_ms": round(min(values), 3)})
            print(json.dumps(results[-1]), flush=True)
    return results


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return cpu_name()


def environment(device: str) -> dict:
    import triton

    return {
        "device": device,
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "triton": triton.__version__,
        **{f"git_{key}": value for key, value in git_state(REPO_ROOT).items()},  # git_commit, git_dirty
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


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
    this_run["load_average_after"] = os.getloadavg()
    this_run["wall_seconds"] = round(time.time() - started, 1)

    report = {"benchmark": "egakit.kernels.cluster_aggregate", **this_run, "runs": [this_run], "rows": rows}
    if args.merge and out.exists():
        report = _merged(json.loads(out.read_text()), report)
    if sweep is not None:
        report["reference_chunk_sweep"] = sweep
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def _runs_of(report: dict) -> list[dict]:
    """The environments of the runs behind ``report`` (a report without ``runs`` is one run)."""
    return report.get("runs") or [{k: v for k, v in report.items() if k not in ("rows", "reference_chunk_sweep")}]


def _merged(old: dict, new: dict) -> dict:
    """``new`` plus the rows (and chunk sweep) of ``old`` that ``new`` did not re-measure; ``runs``
    lists the environment of every run that contributed."""
    key = lambda row: (row["method"], row["dtype"], row["n"], row["mode"])
    measured = {key(row) for row in new["rows"]}
    merged = dict(new)
    merged["rows"] = [row for row in old.get("rows", []) if key(row) not in measured] + new["rows"]
    merged["runs"] = _runs_of(old) + _runs_of(new)
    if "reference_chunk_sweep" in old:
        merged["reference_chunk_sweep"] = old["reference_chunk_sweep"]
    return merged


if __name__ == "__main__":
    main()
