"""The one measurement harness of the performance suites: environment, timing, memory, machine
peaks, power-law fits, result rows and JSON output. Every suite (``latency``, ``flops``,
``compare``, ``kernels`` and the two kernel benchmarks ``bench_*``) only configures it.

Timing. CPU: ``warmup`` calls, then ``repeats`` calls timed with ``time.perf_counter``; the median
is reported (:func:`time_fn`; :func:`time_interleaved` times several functions in turn, one call
of each per round, so a change of load on a shared machine hits all of them alike). CUDA:
``triton.testing.do_bench`` (median of CUDA-event timings, L2 flushed between calls). Every
timing is the dict ``{"median_s", "min_s", "times_s", "repeats"}``.

Memory. CPU (Linux): the process's peak resident set size during the call minus its resident set
size just before it. Before the call the C heap's free pages are returned to the OS
(``malloc_trim``) and the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``), so the
peak belongs to this call alone; each series of points runs in a fresh process (see
:mod:`egakit.perf.latency`). Elsewhere the ``ru_maxrss`` delta is the fallback. CUDA:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` minus the allocation before.
Two more CPU methods serve the kernel benchmarks: :class:`SampledRss` (a thread samples the
resident set during the call) and :func:`allocator_peak_bytes` (torch's CPU allocation records
replayed from the profiler); every row names its method in ``peak_memory_method``.

Rows. A benchmark row uses the keys of :data:`ROW_KEYS` (one spelling, seconds and bytes);
:func:`benchmark_row` builds it.

Traffic. :class:`OpTraffic` counts, for every dispatched op that is not a view, the bytes of its
tensor inputs and outputs: the DRAM traffic of an unfused eager execution in which nothing stays
in cache between ops (the custom ``ega::`` kernels count as one op, i.e. their fused traffic).
It is the "bytes" of the roofline numbers; real traffic is lower where caches help.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from egakit.provenance import git_state

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "perf" / "results"

# Machine peaks: a square fp32 matmul of this size and a copy of this many bytes (per device).
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}
QUICK_MATMUL_SIZE = 512
QUICK_COPY_BYTES = 32 * 2**20


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------
def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding this file."""
    return git_state(REPO_ROOT)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """Human-readable name of ``device`` (``cpu`` or ``cuda``)."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"


def load_average_1m() -> Optional[float]:
    """The 1-minute load average (None where the OS has none): a shared machine's business."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def environment(device: str, **extra: Any) -> dict[str, Any]:
    """Device, versions, thread count, load and git commit: stamped into every result JSON (the
    one spelling of these keys); ``extra`` adds a suite's own fields (its shape, its config)."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # pragma: no cover - triton is a dependency
        triton_version = None
    return {
        "device": device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": load_average_1m(),
        "cuda": torch.version.cuda if device == "cuda" else None,
        **git_commit(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda``; a clear error when CUDA is asked for and absent."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available on this machine")
    return device


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def time_fn(
    fn: Callable[[], Any],
    *,
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 5,
    max_seconds: Optional[float] = None,
) -> dict[str, Any]:
    """Median wall time of ``fn()`` in seconds.

    CPU: ``warmup`` untimed calls, then up to ``repeats`` timed calls (fewer when ``max_seconds``
    of timed calls have run; at least one). CUDA: ``triton.testing.do_bench`` with
    ``rep ≈ max_seconds`` (default 0.5 s). Returns ``{"median_s", "min_s", "times_s", "repeats"}``.
    """
    if device == "cuda":
        from triton.testing import do_bench

        rep_ms = 1000.0 * (max_seconds if max_seconds else 0.5)
        times_ms = do_bench(fn, warmup=25, rep=max(1.0, rep_ms), return_mode="all")
        timing = timing_of([t / 1000.0 for t in times_ms])
        return {**timing, "times_s": timing["times_s"][:50]}
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max(1, repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    return timing_of(times)


def time_once(fn: Callable[[], Any], *, device: str = "cpu") -> float:
    """Wall seconds of one call of ``fn()``, device work included (synchronised before and after)."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def timing_of(times_s: Sequence[float]) -> dict[str, Any]:
    """``{"median_s", "min_s", "times_s", "repeats"}`` of timed calls (seconds)."""
    times = list(times_s)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times, "repeats": len(times)}


def time_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int = 1, repeats: int = 5) -> dict[str, dict[str, Any]]:
    """CPU timing of several functions at once: ``warmup`` untimed calls of each, then ``repeats``
    rounds that time one call of every function in turn. Returns ``{name: timing}`` (:func:`timing_of`)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: timing_of(t) for name, t in times.items()}


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _status_bytes(field: str) -> Optional[int]:
    """``VmRSS`` / ``VmHWM`` of /proc/self/status in bytes (None off Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``), so that a later
    high-water mark counts pages the measured call really touched."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager: ``.bytes`` = peak memory of the block above what was in use at entry.

    CPU (Linux): free heap pages are trimmed, the peak-RSS mark is reset (``clear_refs``) and
    ``.bytes = VmHWM after − VmRSS before``. Where the mark cannot be reset it falls back to the
    ``ru_maxrss`` delta, which counts only a new process-wide high (``.method`` says which).
    CUDA: ``max_memory_allocated`` − allocated at entry.
    """

    CUDA_METHOD = "cuda.max_memory_allocated"

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes: Optional[int] = None
        self.method = self.CUDA_METHOD

    def __enter__(self) -> "PeakMemory":
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._before = torch.cuda.memory_allocated()
            return self
        release_free_memory()
        self._resettable = reset_peak_rss() and _status_bytes("VmHWM") is not None
        if self._resettable:
            self.method = "VmHWM after - VmRSS before (peak mark reset via /proc/self/clear_refs)"
            self._before = _status_bytes("VmRSS")
        else:
            self.method = "getrusage ru_maxrss delta (process high-water mark)"
            self._before = peak_rss_bytes()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self._before
        elif self._resettable:
            self.bytes = (_status_bytes("VmHWM") or 0) - self._before
        else:
            self.bytes = peak_rss_bytes() - self._before


def resident_bytes() -> int:
    """The resident set size now (``/proc/self/statm``, Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class SampledRss:
    """Context manager: a thread samples the resident set size every ``interval_s``;
    ``.bytes`` = the largest sample − the sample at entry (what the OS sees, allocator overhead
    and library buffers included; a peak shorter than the interval can be missed)."""

    method = "sampled resident set (/proc/self/statm) max - at entry"

    def __init__(self, interval_s: float = 2e-4) -> None:
        self.interval_s = interval_s
        self.bytes: Optional[int] = None

    def __enter__(self) -> "SampledRss":
        self._base = self._peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, resident_bytes())
            time.sleep(self.interval_s)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, resident_bytes())
        self.bytes = self._peak - self._base


ALLOCATOR_PEAK_METHOD = "profiler_cpu_allocation_records"


def allocator_peak_bytes(step: Callable[[], Any]) -> int:
    """Peak live bytes torch's CPU allocator holds during ``step()``.

    Replays the profiler's allocation records (+size on allocate, −size on free, nanosecond
    timestamps) in time order. Frees of blocks allocated before the call are ignored: the number
    is what the call itself holds at its peak (tensor storage only, not the Python heap).
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    records, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        fields = node.extra_fields
        if node.tag == _EventType.Allocation and fields.device.type == "cpu":
            records.append((node.start_time_ns, fields.alloc_size, fields.ptr))
    live = peak = 0
    mine: set[int] = set()
    for _, size, ptr in sorted(records):
        if size > 0:
            mine.add(ptr)
        elif ptr in mine:
            mine.discard(ptr)
        else:
            continue  # freed a block that was live before the call
        live += size
        peak = max(peak, live)
    return peak


class OpTraffic(TorchDispatchMode):
    """Bytes read + written per dispatched op (module docstring), views excluded.

    ``.bytes``: total; ``.ops``: number of counted ops. Nest it with FlopCounterMode freely.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not getattr(func, "is_view", False):
            moved = 0
            for t in tree_leaves((args, kwargs, out)):
                if isinstance(t, torch.Tensor):
                    moved += t.numel() * t.element_size()
            self.bytes += moved
            self.ops += 1
        return out


# ---------------------------------------------------------------------------------------------
# Machine peaks
# ---------------------------------------------------------------------------------------------
def matmul_peak(device: str, *, n: Optional[int] = None, dtype: torch.dtype = torch.float32, repeats: int = 5) -> dict[str, Any]:
    """Achieved FLOP/s of an ``n × n`` by ``n × n`` matmul (``2 n³`` FLOPs): the compute roof."""
    n = n or MATMUL_SIZE[device]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    timing = time_fn(lambda: torch.mm(a, b, out=out), device=device, warmup=1, repeats=repeats, max_seconds=5.0)
    flops = 2.0 * n**3
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops": flops, "median_s": timing["median_s"],
            "gflops_per_s": flops / timing["median_s"] / 1e9, "best_gflops_per_s": flops / timing["min_s"] / 1e9}


def copy_bandwidth(device: str, *, nbytes: Optional[int] = None, repeats: int = 5) -> dict[str, Any]:
    """Achieved bytes/s of ``dst.copy_(src)`` on ``nbytes`` (read + write = ``2·nbytes``): the memory roof."""
    nbytes = nbytes or COPY_BYTES[device]
    src = torch.ones(nbytes // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    timing = time_fn(lambda: dst.copy_(src), device=device, warmup=1, repeats=repeats, max_seconds=5.0)
    moved = 2.0 * src.numel() * 4
    return {"bytes": nbytes, "moved_bytes": moved, "median_s": timing["median_s"],
            "gb_per_s": moved / timing["median_s"] / 1e9, "best_gb_per_s": moved / timing["min_s"] / 1e9}


def machine_peaks(device: str, *, quick: bool = False) -> dict[str, Any]:
    """Measured roofs of this run: fp32 matmul FLOP/s (+ bf16 on CUDA) and copy bandwidth."""
    size = QUICK_MATMUL_SIZE if quick else None
    peaks = {
        "matmul_fp32": matmul_peak(device, n=size),
        "copy": copy_bandwidth(device, nbytes=QUICK_COPY_BYTES if quick else None),
    }
    if device == "cuda":
        peaks["matmul_bf16"] = matmul_peak(device, n=size, dtype=torch.bfloat16)
    return peaks


def roofline_fractions(flops: Optional[float], traffic_bytes: Optional[float], seconds: float, peaks: dict) -> dict:
    """Achieved GFLOP/s and GB/s of one measurement and their fractions of the measured peaks."""
    out: dict[str, Optional[float]] = {"gflops_per_s": None, "gb_per_s": None,
                                       "fraction_of_matmul_peak": None, "fraction_of_copy_bandwidth": None}
    if seconds <= 0:
        return out
    if flops is not None:
        out["gflops_per_s"] = flops / seconds / 1e9
        out["fraction_of_matmul_peak"] = out["gflops_per_s"] / peaks["matmul_fp32"]["gflops_per_s"]
    if traffic_bytes is not None:
        out["gb_per_s"] = traffic_bytes / seconds / 1e9
        out["fraction_of_copy_bandwidth"] = out["gb_per_s"] / peaks["copy"]["gb_per_s"]
    return out


# ---------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------
def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict[str, Optional[float]]:
    """Least squares of ``log y = a + p·log x``: ``{"exponent": p, "prefactor": e^a, "r2", "points"}``.

    Points with a non-positive x or y are dropped; fewer than two points give ``None`` values.
    """
    pairs = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len(pairs) < 2:
        return {"exponent": None, "prefactor": None, "r2": None, "points": len(pairs)}
    n = len(pairs)
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    if sxx == 0:
        return {"exponent": None, "prefactor": None, "r2": None, "points": n}
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pairs)
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((p[1] - my) ** 2 for p in pairs)
    ss_res = sum((p[1] - intercept - slope * p[0]) ** 2 for p in pairs)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"exponent": slope, "prefactor": math.exp(intercept), "r2": r2, "points": n}


# ---------------------------------------------------------------------------------------------
# Benchmark rows
# ---------------------------------------------------------------------------------------------
#: The keys every benchmark row carries (kernel benchmarks; ``egakit.perf.kernels`` reads them).
ROW_KEYS = ("impl", "pass", "n", "dtype", "median_s", "min_s", "repeats", "peak_memory_bytes", "peak_memory_method")


def benchmark_row(*, impl: str, pass_name: str, n: int, dtype: str, timing: dict[str, Any],
                  peak_memory_bytes: Optional[int], peak_memory_method: str, flops: Optional[float] = None,
                  traffic_bytes: Optional[float] = None, **fields: Any) -> dict[str, Any]:
    """One row: the :data:`ROW_KEYS`, then ``gflops_per_s`` / ``gb_per_s`` when ``flops`` /
    ``traffic_bytes`` are given (per the median time), then the benchmark's own ``fields``."""
    seconds = timing["median_s"]
    row: dict[str, Any] = {
        "impl": impl, "pass": pass_name, "n": n, "dtype": dtype,
        "median_s": seconds, "min_s": timing["min_s"], "repeats": timing["repeats"],
        "peak_memory_bytes": peak_memory_bytes, "peak_memory_method": peak_memory_method,
    }
    if flops is not None:
        row["flops"] = flops
        row["gflops_per_s"] = flops / seconds / 1e9 if seconds > 0 else None
    if traffic_bytes is not None:
        row["unavoidable_bytes"] = traffic_bytes
        row["gb_per_s"] = traffic_bytes / seconds / 1e9 if seconds > 0 else None
    return {**row, **fields}


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def result_path(out_dir: Path | str, suite: str, device: str, tag: str = "") -> Path:
    """``<out>/<suite>_<device>[_<tag>].json``."""
    return Path(out_dir) / f"{suite}_{device}{'_' + tag if tag else ''}.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return value


def write_json(path: Path | str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (non-finite floats → null) as indented JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2, default=str) + "\n")
    return path


def read_json(path: Path | str) -> Optional[dict[str, Any]]:
    """The JSON at ``path``, or None when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def log(message: str) -> None:
    """Progress line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)
