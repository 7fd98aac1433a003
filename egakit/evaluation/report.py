"""Tables (JSON + Markdown) and the scaling figure from the per-system results files.

Table JSON schema (exactly these keys)::

    {"rows": [{"system": str, "source": "oracle" | "evaluator",
               "metrics": {"recall@50", "auc", "ectr", "erpm", "psi", "dev"},
               "std": {same keys}, "seeds": int}],
     "world": {...}, "commit": str}

``metrics`` holds the mean over seeds and ``std`` the sample standard deviation (0 for one
seed); a metric a source cannot give (eCTR without an evaluator) or a non-finite one is ``null``.
Units: Recall@50, AUC, Dev and Ψ as fractions; eCTR in % (Σ q × 100), eRPM per mille (Σ q·p × 1000).
"""
from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from egakit.evaluation.config import METRICS, SOURCES
from egakit.sim.fingerprint import short

TABLE_TITLES = {
    "table1": "Table 1 — architectures (V1 §5.2): MCA, FS-LTR, EGA-V1, and classic auctions on the true CTR",
    "table2": "Table 2 — EGA-V1 variants (V1 §5.3): −gcf, −mif, −auf",
    "table3": "Table 3 — cross features (V1 §5.4): MCA ± CF, EGA-V1 ± CF, −CA, −TA, −mif, LF",
}
COLUMNS = {
    METRICS[0]: "Recall@50",
    "auc": "AUC",
    "ectr": "eCTR (%)",
    "erpm": "eRPM",
    "psi": "Ψ (%)",
    "dev": "Dev",
}
PERCENT_COLUMNS = {"psi"}
SOURCE_NOTE = (
    "*oracle*: the world's hidden truth (true list CTR, true values, labels sampled from the true CTR of "
    "every candidate). *evaluator*: the paper's protocol (the EGA reward model's permutation-aware pCTR "
    "for eCTR / eRPM / Ψ with v = b; logged labels for Recall@50, AUC and Dev)."
)


def write_json(path: Path, obj: Any) -> None:
    """Atomic write (a crash never leaves a half-written results file that a rerun would skip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n")  # NaN is not JSON
    os.replace(tmp, path)


def _mean_std(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def system_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table rows (one per source) of one system's results file."""
    rows = []
    for source in SOURCES:
        per_seed = [s["metrics"][source] for s in result["per_seed"] if source in s["metrics"]]
        if not per_seed:
            continue
        metrics, std = {}, {}
        for name in METRICS:
            metrics[name], std[name] = _mean_std([s.get(name) for s in per_seed])
        rows.append({"system": result["system"], "source": source, "metrics": metrics, "std": std, "seeds": len(per_seed)})
    return rows


def table(rows: list[dict[str, Any]], world: Mapping[str, Any], commit: str) -> dict[str, Any]:
    return {"rows": rows, "world": dict(world), "commit": commit}


def _cell(mean: Optional[float], std: Optional[float], percent: bool) -> str:
    if mean is None:
        return "—"
    scale = 100.0 if percent else 1.0
    text = f"{mean * scale:.4g}"
    return text if not std else f"{text} ± {std * scale:.2g}"


def markdown(title: str, rows: list[dict[str, Any]], world: Mapping[str, Any], commit: str) -> str:
    header = "| System | Source | " + " | ".join(COLUMNS[m] for m in METRICS) + " | Seeds |"
    lines = [f"# {title}", "", header, "|" + "---|" * (len(METRICS) + 3)]
    for row in rows:
        cells = [_cell(row["metrics"][m], row["std"][m], m in PERCENT_COLUMNS) for m in METRICS]
        lines.append(f"| {row['system']} | {row['source']} | " + " | ".join(cells) + f" | {row['seeds']} |")
    lines += ["", SOURCE_NOTE, "", "Values: mean ± sample std over seeds; — = not available.", ""]
    lines.append(
        f"World `{short(str(world.get('fingerprint')))}` (`{world.get('dir')}`, preset {world.get('preset')}, "
        f"seed {world.get('seed')}), split "
        f"{world.get('split')}, {world.get('requests')} requests, K = {world.get('K')}. Commit `{commit}`."
    )
    return "\n".join(lines) + "\n"


def scaling_points(results: Sequence[Mapping[str, Any]], metric: str, source: str) -> list[dict[str, Any]]:
    points = []
    for result in results:
        rows = {r["source"]: r for r in system_rows(result)}
        row = rows.get(source)
        value = None if row is None else row["metrics"][metric]
        points.append(
            {
                "system": result["system"],
                "layers": result.get("layers"),
                "flops_per_request": result.get("flops_per_request"),
                "value": value,
                "std": None if row is None else row["std"][metric],
            }
        )
    return points


def plot_scaling(points: Sequence[Mapping[str, Any]], metric: str, source: str, path: Path) -> None:
    """V1 Fig. 5 analogue: the metric against the number of layers and against FLOPs (log x), with
    a least-squares line in log10 FLOPs."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    label = f"{COLUMNS[metric]} ({source})"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    by_layers = sorted((p for p in points if p["value"] is not None and p["layers"] is not None), key=lambda p: p["layers"])
    if by_layers:
        left.errorbar([p["layers"] for p in by_layers], [p["value"] for p in by_layers],
                      yerr=[p["std"] or 0.0 for p in by_layers], marker="o", capsize=3)
    left.set_xlabel("layers (m)")
    left.set_ylabel(label)
    left.set_title("metric vs depth")
    with_flops = sorted((p for p in points if p["value"] is not None and p["flops_per_request"]), key=lambda p: p["flops_per_request"])
    if with_flops:
        x = np.array([p["flops_per_request"] for p in with_flops], dtype=float)
        y = np.array([p["value"] for p in with_flops], dtype=float)
        right.scatter(x, y)
        for p in with_flops:
            right.annotate(p["system"], (p["flops_per_request"], p["value"]), fontsize=7)
        if len(with_flops) >= 2 and np.ptp(np.log10(x)) > 0:
            slope, intercept = np.polyfit(np.log10(x), y, 1)
            grid = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
            right.plot(grid, slope * np.log10(grid) + intercept, "--", color="saddlebrown", label="linear fit (log FLOPs)")
            right.legend(fontsize=8)
        if x.max() >= 10 * x.min():  # a log axis needs a decade to show its ticks
            right.set_xscale("log")
            right.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            right.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    right.set_xlabel("FLOPs per request (measured; fit in log10 FLOPs)")
    right.set_ylabel(label)
    right.set_title("metric vs compute")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scaling_markdown(points: Sequence[Mapping[str, Any]], metric: str, source: str, commit: str) -> str:
    lines = [
        "# Scaling (V1 §5.5, Fig. 5 analogue)",
        "",
        f"![scaling](scaling.png)",
        "",
        f"| System | Layers | FLOPs / request | {COLUMNS[metric]} ({source}) |",
        "|---|---|---|---|",
    ]
    for p in points:
        flops = "—" if not p["flops_per_request"] else f"{p['flops_per_request']:.3g}"
        lines.append(f"| {p['system']} | {p['layers']} | {flops} | {_cell(p['value'], p['std'], metric in PERCENT_COLUMNS)} |")
    lines += ["", "FLOPs: `torch.utils.flop_counter` over one forward of the system per request.", f"Commit `{commit}`.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# W&B (``ega evaluate`` logs its tables as W&B tables, its plots as images)

def wandb_columns() -> list[str]:
    """Columns of a table in W&B: system, source, each metric's mean, then its std, seeds."""
    return ["system", "source", *METRICS, *(f"{m}_std" for m in METRICS), "seeds"]


def wandb_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """``rows`` (:func:`system_rows`) as the data of a W&B table with :func:`wandb_columns`."""
    return [[row["system"], row["source"], *(row["metrics"][m] for m in METRICS),
             *(row["std"][m] for m in METRICS), row["seeds"]] for row in rows]


def log_tables_to_wandb(run: Any, tables: Mapping[str, Sequence[Mapping[str, Any]]],
                        images: Mapping[str, Path]) -> None:
    """Log each table (name -> rows) as a ``wandb.Table`` and each plot as a ``wandb.Image``,
    under the table's name (``table1``, ``scaling``) in one step."""
    import wandb

    payload: dict[str, Any] = {}
    for name, rows in tables.items():
        payload[name] = wandb.Table(columns=wandb_columns(), data=wandb_rows(rows))
    for name, path in images.items():
        if Path(path).is_file():
            payload[name] = wandb.Image(str(path))
    if payload:
        run.log(payload)
