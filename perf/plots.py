"""PNG plots of the suites' JSON payloads (matplotlib, Agg backend), written next to the JSON.

- ``latency_<device>.png``: time and peak memory vs N on log-log axes, one line per block and
  mode, the fitted growth exponent in the legend, a dotted N¹ reference.
- ``flops_<device>.png``: FLOPs measured (FlopCounterMode) vs formula (egakit.flops.model) per
  module at the largest N, forward and train, with the ratio on each bar pair.
- ``compare_<device>.png``: time and formula FLOPs vs N of EGA-V1, early fusion, late fusion and
  MCA; extrapolated early-fusion times dashed.
- ``kernels_<device>.png``: kernel time vs N per implementation, when the kernel benchmarks ran.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from egakit.perf import common  # noqa: E402

DPI = 110
TITLE_FONTSIZE = 9


def _title(payload: dict[str, Any], what: str) -> str:
    env = payload["environment"]
    commit = (env.get("commit") or "unknown")[:10]
    return f"{what} — {payload['workload']['name']} config — {env['device_name']} — torch {env['torch']} — {commit}"


def _save(fig, path: Path, title: str) -> Path:
    """Title, lay out, write (``DPI``) and close ``fig``; returns ``path``."""
    fig.suptitle(title, fontsize=TITLE_FONTSIZE)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _reference(ax, xs: list[float], ys: list[float]) -> None:
    """Dotted N¹ line through the first point of the largest series."""
    if len(xs) >= 2:
        ax.plot([xs[0], xs[-1]], [ys[0], ys[0] * xs[-1] / xs[0]], ":", color="grey", linewidth=1, label="∝ N (reference)")


def plot_latency(payload: dict[str, Any], path: Path) -> Path:
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(15, 6))
    biggest: tuple[list[float], list[float], list[float]] = ([], [], [])
    for key, fit in payload["fits"].items():
        block, mode = key.split("/")
        pts = sorted((p for p in payload["points"] if p["block"] == block and p["mode"] == mode and p.get("status") == "ok"),
                     key=lambda p: p["N"])
        if len(pts) < 2:
            continue
        ns = [p["N"] for p in pts]
        style = "-o" if mode == "forward" else "--s"
        exp_t = fit["time"]["exponent"]
        exp_m = fit["memory"]["exponent"]
        ax_t.loglog(ns, [p["median_s"] for p in pts], style, markersize=4, label=f"{key} (N^{exp_t:.2f})")
        mems = [max(p["peak_memory_bytes"] or 0, 1) / 2**20 for p in pts]
        ax_m.loglog(ns, mems, style, markersize=4, label=f"{key} (N^{exp_m:.2f})" if exp_m is not None else key)
        if block == "ega_v1_allocate":
            biggest = (ns, [p["median_s"] for p in pts], mems)
    _reference(ax_t, biggest[0], biggest[1])
    _reference(ax_m, biggest[0], biggest[2])
    ax_t.set(xlabel="candidates N", ylabel="median time per call (s)", title="time vs N (fitted exponent)")
    ax_m.set(xlabel="candidates N", ylabel="peak memory above baseline (MiB)", title="peak memory vs N (fitted exponent)")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path, _title(payload, "EGA-V1 latency and memory"))


def plot_flops(payload: dict[str, Any], path: Path) -> Path:
    largest = max(r["N"] for r in payload["rows"])
    rows = [r for r in payload["rows"] if r["N"] == largest]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    for ax, mode in zip(axes, ("forward", "train")):
        sel = [r for r in rows if r["mode"] == mode]
        xs = range(len(sel))
        ax.bar([x - 0.2 for x in xs], [r["measured_flops"] for r in sel], width=0.4, label="measured (FlopCounterMode)")
        ax.bar([x + 0.2 for x in xs], [r["formula_flops"] for r in sel], width=0.4, label="formula (egakit.flops.model)")
        for x, r in zip(xs, sel):
            ax.text(x, r["measured_flops"] * 1.15, f"{r['ratio']:.3f}", ha="center", fontsize=7, rotation=90)
        ax.set_yscale("log")
        ax.set_ylim(top=max(r["measured_flops"] for r in sel) * 30)
        ax.set_xticks(list(xs), [r["module"] for r in sel], rotation=60, ha="right", fontsize=8)
        ax.set(ylabel="FLOPs", title=f"{mode} at N = {largest:,} (ratio measured / formula above the bars)")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path, _title(payload, "FLOPs measured vs formula"))


def plot_compare(payload: dict[str, Any], path: Path) -> Path:
    rows = payload["rows"]
    ns = [r["N"] for r in rows]
    fig, (ax_t, ax_f) = plt.subplots(1, 2, figsize=(14, 6))
    for name, label in (("ega_v1", "EGA-V1 (allocate)"), ("early_fusion", "early fusion (per-candidate L+1 sequence)"),
                        ("late_fusion", "late fusion"), ("mca", f"MCA (early fusion on αN, α = {payload['alpha']})")):
        times = [r["time_s"][name] for r in rows]
        line = ax_t.loglog(ns, times, "-o", markersize=4, label=label)[0]
        if name == "early_fusion":
            extra = [(n, t) for n, t, r in zip(ns, times, rows) if r["time_source"]["early_fusion"] == "extrapolated"]
            if extra:
                ax_t.loglog(*zip(*extra), "o", markerfacecolor="white", color=line.get_color(), label="(extrapolated)")
    for key, label in (("ega_v1_project", "EGA-V1 (egakit.flops.model)"), ("ega_v1_paper_eq33", "EGA-V1 (Eq. 33, both stacks)"),
                       ("early_fusion", "early fusion (Eq. 25 per candidate)"), ("late_fusion", "late fusion (Eq. 25 + 26)"),
                       ("mca", "MCA (Eq. 29)")):
        ax_f.loglog(ns, [r["flops"][key] for r in rows], "-o", markersize=4, label=label)
    ax_t.set(xlabel="candidates N", ylabel="time per request (s)", title="measured time")
    ax_f.set(xlabel="candidates N", ylabel="FLOPs per request", title="formula FLOPs")
    for ax in (ax_t, ax_f):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, _title(payload, "EGA-V1 vs early / late fusion"))


def plot_kernels(payload: dict[str, Any], path: Path) -> Optional[Path]:
    """One panel per kernel: time vs N per implementation (colour), forward solid, fwd+bwd dashed."""
    series = payload.get("series") or {}
    kernels = sorted({label.split("/")[0] for label in series})
    if not kernels:
        return None
    fig, axes = plt.subplots(1, len(kernels), figsize=(7.5 * len(kernels), 6), squeeze=False)
    for ax, kernel in zip(axes[0], kernels):
        labels = sorted(label for label in series if label.startswith(kernel + "/"))
        impls = sorted({label.split("/")[1] for label in labels})
        colours = {impl: f"C{i}" for i, impl in enumerate(impls)}
        for label in labels:
            pts = sorted(series[label])
            parts = label.split("/")
            style = "--s" if len(parts) > 2 and "backward" in parts[2] else "-o"
            if len(pts) >= 2:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts], style, color=colours[parts[1]], markersize=4,
                          label="/".join(parts[1:]))
        ax.set(xlabel="N", ylabel="median time (ms)", title=f"{kernel} (solid: forward, dashed: forward + backward)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path, _title(payload, "kernels vs eager torch vs torch.compile"))


PLOTTERS = {"latency": plot_latency, "flops": plot_flops, "compare": plot_compare, "kernels": plot_kernels}


def plot(suite: str, payload: dict[str, Any], json_path: Path) -> Optional[Path]:
    """Plot ``payload`` of ``suite`` next to its JSON (same name, .png); None if nothing to plot."""
    plotter = PLOTTERS.get(suite)
    if plotter is None:
        return None
    try:
        return plotter(payload, Path(json_path).with_suffix(".png"))
    except (KeyError, ValueError, TypeError) as error:  # a partial payload must not lose the JSON
        common.log(f"[plots] {suite}: not plotted ({type(error).__name__}: {error})")
        return None
