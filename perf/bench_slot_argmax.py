"""Benchmark of ``egakit.kernels.slot_argmax`` (docs/design.md §4 / §10): latency, bandwidth, FLOP/s and peak memory.

Implementations, each timed for the forward and for forward + backward (of Σ logz):

* ``triton``          — the fused Triton kernels (CUDA only; the CPU interpreter is not a benchmark);
* ``torch``           — the torch path (``torch.ops.ega.slot_argmax``: chunked scores, greedy,
                        analytic backward), the CPU production path;
* ``naive_eager``     — what one writes first: dense scores ``h @ tᵀ + bias`` in the input dtype,
                        then per slot a masked argmax and a logsumexp, autograd for the backward;
* ``torch_compile``   — ``torch.compile`` of that naive code (compile time excluded: warm-up).
                        Not called "naive_*": ``egakit.perf.kernels`` reads names containing "naive" or
                        "eager" as the eager baseline of its speedup.

Per row: the median time in ms; achieved GB/s over the unavoidable bytes; GFLOP/s of the op's FLOP
formula (forward 2·B·N·K·d, forward + backward 8·B·N·K·d); the peak memory of one call.

Unavoidable bytes: forward reads h once, bias and mask (B·N·d·e + B·N·e + B·N, e = element
size; t and the B·K outputs are negligible). Forward + backward is two passes (the loss sits
between them), so it adds the backward's minimum: read h, bias and mask again, write dh and dbias
(total 3·B·N·d·e + 3·B·N·e + 2·B·N).

Peak memory of one call, above what was live before it (the inputs): on CUDA
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU, where torch keeps
no allocator counter, the peak of the live bytes replayed from ``torch.profiler``'s allocation
records (``profile_memory=True``: every CPU allocation and free, in time order), in a separate,
untimed call; frees of blocks from before the call are ignored. It counts tensor storage from
torch's CPU allocator (compiled code included), not the Python heap or library workspaces. The
gradients of the previous call are dropped before the measured call on both devices.

Timing: ``triton.testing.do_bench`` (median, and the minimum) on CUDA; on CPU one untimed call
(compilation), two warm-up calls, then the median (and minimum) of ``repeats`` calls with
``time.perf_counter``. The forward runs under ``torch.no_grad``. On a CPU shared with other work,
intra-op threads stall on each other: ``--threads 1`` gives steadier numbers (the environment block
records the thread count and the load average).

Usage: ``python -m egakit.perf.bench_slot_argmax [--device cpu|cuda] [--ns 1000 10000 100000]
[--dtypes float32 bfloat16] [--repeats 5] [--threads N]`` writes
``perf/results/kernels_slot_argmax_<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Union

if __package__ in (None, ""):  # run as a script: perf/kernels.py would shadow the kernels package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402
import triton  # noqa: E402

from egakit.provenance import git_state  # noqa: E402
from egakit.perf.common import cpu_name  # noqa: E402
from egakit.kernels import slot_argmax  # noqa: E402

BATCH, SLOTS, DIM = 1, 5, 128  # the EGA-V1 generator's shape (docs/design.md §3.3), one request
VALID_FRACTION = 0.9
RESULTS_DIR = Path(__file__).resolve().parent / "results"
IMPLEMENTATIONS = ("triton", "torch", "naive_eager", "torch_compile")
PASSES = ("forward", "forward+backward")


# ----------------------------------------------------------------------------------------------
# the naive baseline
# ----------------------------------------------------------------------------------------------
def naive_slot_argmax(h, t, bias, mask):
    """Dense (B, N, K) scores, then per slot a masked argmax and a logsumexp (autograd backward)."""
    scores = (torch.matmul(h, t.transpose(1, 2)) + bias[:, :, None]).float()
    remaining = mask.clone()
    picks, logzs = [], []
    for k in range(t.shape[1]):
        score_k = scores[:, :, k].masked_fill(~remaining, float("-inf"))
        pick = score_k.argmax(dim=1)
        logzs.append(score_k.gather(1, pick[:, None])[:, 0] - torch.logsumexp(score_k, dim=1))
        picks.append(pick)
        remaining = remaining.scatter(1, pick[:, None], False)
    return torch.stack(picks, 1), torch.stack(logzs, 1)


def _implementation(name: str) -> Callable:
    if name == "triton":
        return lambda h, t, bias, mask: slot_argmax(h, t, bias, mask, backend="triton")
    if name == "torch":
        return lambda h, t, bias, mask: slot_argmax(h, t, bias, mask, backend="torch")
    if name == "naive_eager":
        return naive_slot_argmax
    if name == "torch_compile":
        return torch.compile(naive_slot_argmax)
    raise ValueError(f"unknown implementation {name!r}; expected one of {IMPLEMENTATIONS}")


# ----------------------------------------------------------------------------------------------
# inputs, work and bytes
# ----------------------------------------------------------------------------------------------
def make_inputs(n: int, dtype: torch.dtype, device: str, *, requires_grad: bool, seed: int = 0):
    gen = torch.Generator(device=device).manual_seed(seed)
    h = torch.randn(BATCH, n, DIM, device=device, generator=gen).to(dtype)
    t = (torch.randn(BATCH, SLOTS, DIM, device=device, generator=gen) / DIM**0.5).to(dtype)
    bias = torch.randn(BATCH, n, device=device, generator=gen).to(dtype)
    mask = torch.rand(BATCH, n, device=device, generator=gen) < VALID_FRACTION
    mask[:, :SLOTS] = True  # at least K valid candidates even at tiny N
    for x in (h, t, bias):
        x.requires_grad_(requires_grad)
    return h, t, bias, mask


def flops(n: int, pass_name: str) -> int:
    forward = 2 * BATCH * n * SLOTS * DIM
    return forward if pass_name == "forward" else 4 * forward


def unavoidable_bytes(n: int, dtype: torch.dtype, pass_name: str) -> int:
    element = torch.empty((), dtype=dtype).element_size()
    forward = BATCH * n * (DIM * element + element + 1)
    if pass_name == "forward":
        return forward
    return forward + BATCH * n * (2 * DIM * element + 2 * element + 1)


def _step(fn: Callable, inputs, pass_name: str) -> Callable[[], None]:
    """A no-argument callable running one forward (and backward) of ``fn``."""
    h, t, bias, mask = inputs
    if pass_name == "forward":
        def forward_only():
            with torch.no_grad():
                fn(h, t, bias, mask)
        return forward_only

    def forward_backward():
        h.grad = t.grad = bias.grad = None
        _, logz = fn(h, t, bias, mask)
        logz.float().sum().backward()
    return forward_backward


# ----------------------------------------------------------------------------------------------
# timing and memory
# ----------------------------------------------------------------------------------------------
def _cuda_sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(step: Callable[[], None], device: str, repeats: int) -> tuple[float, float]:
    """(median, min) milliseconds of ``step``: do_bench on CUDA, warm-up + repeats on CPU."""
    if device.startswith("cuda"):
        median, fastest = triton.testing.do_bench(step, warmup=25, rep=100, quantiles=[0.5, 0.0])
        return float(median), float(fastest)
    for _ in range(2):
        step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples)


def _cpu_allocation_peak(step: Callable[[], None]) -> int:
    """Peak live bytes allocated by torch's CPU allocator during ``step``.

    Replays the profiler's allocation records (+size on allocate, −size on free, nanosecond
    timestamps) in time order. Frees of blocks allocated before the call are ignored: the number
    is what the call itself holds at its peak.
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


def peak_memory(step: Callable[[], None], device: str) -> tuple[Optional[int], str]:
    """(bytes, method) of one call above what was live before it (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, "cuda_max_memory_allocated"
    return _cpu_allocation_peak(step), "profiler_cpu_allocation_records"


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def _implementations_for(device: str) -> tuple[str, ...]:
    on_cuda = device.startswith("cuda")
    return tuple(name for name in IMPLEMENTATIONS if name != "triton" or on_cuda)


def _dtype_name(dtype: Union[str, torch.dtype]) -> str:
    """"float32" for "float32" or torch.float32 (egakit.perf.kernels passes torch dtypes)."""
    name = str(dtype).removeprefix("torch.")
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return name


def measure(name: str, n: int, dtype_name: str, pass_name: str, device: str, repeats: int) -> dict:
    dtype = getattr(torch, dtype_name)
    inputs = make_inputs(n, dtype, device, requires_grad=pass_name != "forward")
    step = _step(_implementation(name), inputs, pass_name)
    step()  # compile / autotune / first-touch outside the timing
    _cuda_sync(device)
    median_ms, min_ms = time_ms(step, device, repeats)
    for x in inputs[:3]:
        x.grad = None  # the previous call's gradients must not count for (or against) this one
    peak_bytes, peak_method = peak_memory(step, device)
    seconds = median_ms / 1e3
    return {
        "impl": name,
        "pass": pass_name,
        "n": n,
        "dtype": dtype_name,
        "batch": BATCH,
        "slots": SLOTS,
        "dim": DIM,
        "median_ms": round(median_ms, 4),
        "min_ms": round(min_ms, 4),
        "gb_per_s": round(unavoidable_bytes(n, dtype, pass_name) / seconds / 1e9, 3),
        "gflop_per_s": round(flops(n, pass_name) / seconds / 1e9, 3),
        "flops": flops(n, pass_name),
        "unavoidable_bytes": unavoidable_bytes(n, dtype, pass_name),
        "peak_memory_bytes": peak_bytes,
        "peak_memory_method": peak_method,
    }


def run(
    device: str,
    ns=(1000, 10000, 100000),
    dtypes=("float32", "bfloat16"),  # names or torch dtypes
    repeats: int = 5,
    implementations: Optional[tuple[str, ...]] = None,
) -> list[dict]:
    """One row per (implementation, pass, N, dtype); see the module docstring for the columns."""
    names = implementations or _implementations_for(device)
    rows = []
    for dtype_name in map(_dtype_name, dtypes):
        for n in ns:
            for name in names:
                for pass_name in PASSES:
                    rows.append(measure(name, n, dtype_name, pass_name, device, repeats))
                    print(_format_row(rows[-1]), flush=True)
    return rows


def _format_row(row: dict) -> str:
    memory = "n/a" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**20:8.1f} MiB"
    return (f"{row['impl']:>15} {row['pass']:>16} N={row['n']:>6} {row['dtype']:>8}: "
            f"{row['median_ms']:9.3f} ms {row['gb_per_s']:8.2f} GB/s "
            f"{row['gflop_per_s']:8.2f} GFLOP/s  peak {memory}")


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def environment(device: str) -> dict:
    return {
        "device": device,
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        # the measured code differs from the commit (untracked files included): egakit.provenance
        **{f"git_{key}": value for key, value in git_state().items()},  # git_commit, git_dirty
        "cpu_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "shape": {"batch": BATCH, "slots": SLOTS, "dim": DIM, "valid_fraction": VALID_FRACTION},
    }


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ns", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 on a loaded shared CPU")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit("unset TRITON_INTERPRET: the interpreter is for tests, not timings")
    env = environment(args.device)
    rows = run(args.device, ns=tuple(args.ns), dtypes=tuple(args.dtypes), repeats=args.repeats)
    device_kind = torch.device(args.device).type
    out = args.out or RESULTS_DIR / f"kernels_slot_argmax_{device_kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
