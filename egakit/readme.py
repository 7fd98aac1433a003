"""The README's "current results" block, generated from the committed reports.

    python -m egakit.readme            # rewrite the block in README.md from reports/v1/*.json
                                       # and perf/results/summary.json
    python -m egakit.readme --check    # exit 1 when README.md's block differs from the reports

The block sits between :data:`BEGIN` and :data:`END` in README.md. It holds one table per report
named in :data:`RESULT_FILES`, each under one line that says where the numbers come from: the
world (its directory, preset, seed and content fingerprint), the commit that produced them (with
``-dirty`` when the checkout had uncommitted changes) and the number of seeds. A report that lacks
a fingerprint, or came from a dirty checkout, or from one seed, says so in that line.

Two report schemas are read:

- evaluation tables (``ega evaluate``, schema in :mod:`egakit.evaluation.report`):
  ``{"rows": [{"system", "source", "metrics", "std", "seeds"}], "world": {...}, "commit"}``;
- ``ega perf``'s ``perf/results/summary.json`` (device, commit, growth exponents, kernel speedups,
  FLOPs measured / formula, the paper's FLOPs claims);
- paired seed studies (``python -m studies.pointwise_study``): ``{"world", "commit",
  "summary": {"seeds", <metric>: {<variant>: {"mean", "std"}, "paired_difference": {...}}}}``.

Only the standard library is used, so the check runs without torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
REPORTS = REPO / "reports" / "v1"
PERF_SUMMARY = REPO / "perf" / "results" / "summary.json"
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
#: The reports shown in the README, in order, with their headings.
RESULT_FILES: tuple[tuple[str, str], ...] = (
    ("table1.json", "Table 1: MCA, FS-LTR, EGA-V1 and the classic auctions on the true CTR (EGA-V1 §5.2)"),
    ("table2.json", "Table 2: EGA-V1 variants (EGA-V1 §5.3)"),
    ("table3.json", "Table 3: cross features and fusion variants (EGA-V1 §5.4)"),
    ("set_aware_vs_pointwise.json", "Set-aware vs point-wise pre-trained pCTR (the −gcf row of EGA-V1 Table 2)"),
)
#: Column headings of the evaluation tables' metrics (units as in egakit.evaluation.report).
METRIC_LABELS = {
    "recall@50": "Recall@50",
    "auc": "AUC",
    "ectr": "eCTR (%)",
    "erpm": "eRPM",
    "psi": "Ψ (%)",
    "dev": "Dev",
}
#: Readable names of the paired studies' metrics and variants (other keys are shown as they are).
STUDY_LABELS = {
    "logged_auc": "AUC on logged labels",
    "oracle_auc": "AUC on the truth (oracle)",
    "set_aware": "set-aware",
    "point_wise_no_gcf": "point-wise (−gcf)",
}
#: Metrics stored as fractions and shown in percent.
PERCENT_METRICS = frozenset({"psi"})
SIGNIFICANT_DIGITS = 4
STD_DIGITS = 2
AUC_DECIMALS = 4
SHORT_COMMIT = 12
DIRTY_SUFFIX = "-dirty"
FINGERPRINT_KEYS = ("fingerprint", "world_fingerprint")
SHORT_FINGERPRINT = 12
#: |measured / formula − 1| below which a module's FLOPs count as matching their formula.
FLOPS_TOLERANCE = 0.01
SECTION_PREFIX = "###"
PERF_HEADING = "Performance on CPU (`ega perf all --device cpu`)"


class ReadmeError(ValueError):
    """The README or a report cannot be read as expected (names the file and what is wrong)."""


# --------------------------------------------------------------------------- provenance


def _commit_text(commit: Optional[str]) -> str:
    if not commit:
        return "commit not recorded"
    dirty = commit.endswith(DIRTY_SUFFIX)
    sha = commit[: -len(DIRTY_SUFFIX)] if dirty else commit
    text = f"commit `{sha[:SHORT_COMMIT]}`"
    return text + (" with uncommitted changes" if dirty else "")


def _fingerprint(report: Mapping[str, Any]) -> Optional[str]:
    world = report.get("world")
    for holder in (world if isinstance(world, Mapping) else {}, report):
        for key in FINGERPRINT_KEYS:
            if holder.get(key):
                return str(holder[key])
    return None


def _world_text(report: Mapping[str, Any]) -> str:
    world = report.get("world")
    if isinstance(world, Mapping):
        text = f"world `{world.get('dir', '?')}` (preset {world.get('preset', '?')}, seed {world.get('seed', '?')})"
        if world.get("requests") is not None:
            text += f", {world['requests']} {world.get('split', '')} requests".replace("  ", " ")
    elif world:
        text = f"world {world}"
    else:
        text = "world not recorded"
    fingerprint = _fingerprint(report)
    fingerprint_text = f"fingerprint `{fingerprint[:SHORT_FINGERPRINT]}`" if fingerprint else "no world fingerprint recorded"
    return f"{text}; {fingerprint_text}"


def _seeds_text(seeds: int) -> str:
    return "1 seed" if seeds == 1 else f"{seeds} seeds"


def provenance_line(report: Mapping[str, Any], seeds: int) -> str:
    """One line: the world, its fingerprint (or its absence), the commit and the seed count."""
    return f"Measured on {_world_text(report)}; {_commit_text(report.get('commit'))}; {_seeds_text(seeds)}."


# --------------------------------------------------------------------------- tables


def _number(value: Optional[float], percent: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * (100.0 if percent else 1.0):.{SIGNIFICANT_DIGITS}g}"


def _cell(mean: Optional[float], std: Optional[float], percent: bool) -> str:
    text = _number(mean, percent)
    if mean is None or not std:
        return text
    return f"{text} ± {std * (100.0 if percent else 1.0):.{STD_DIGITS}g}"


def render_evaluation_table(report: Mapping[str, Any], name: str) -> tuple[list[str], int]:
    """Markdown lines of an ``ega evaluate`` table and its largest seed count."""
    rows = report.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ReadmeError(f"{name}: 'rows' must be a non-empty list")
    metrics = [m for m in METRIC_LABELS if m in rows[0].get("metrics", {})]
    if not metrics:
        raise ReadmeError(f"{name}: row 0 has none of the metrics {sorted(METRIC_LABELS)}")
    lines = [
        "| system | source | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for index, row in enumerate(rows):
        try:
            cells = [_cell(row["metrics"].get(m), row.get("std", {}).get(m), m in PERCENT_METRICS) for m in metrics]
            lines.append(f"| {row['system']} | {row['source']} | " + " | ".join(cells) + " |")
        except (KeyError, TypeError, AttributeError) as error:
            raise ReadmeError(f"{name}: row {index} lacks {error}") from None
    return lines, max(int(row.get("seeds", 1)) for row in rows)


def _auc(value: Mapping[str, float]) -> str:
    return f"{value['mean']:.{AUC_DECIMALS}f} ± {value['std']:.{AUC_DECIMALS}f}"


def _study_label(key: str) -> str:
    return STUDY_LABELS.get(key, key)


def render_paired_study(report: Mapping[str, Any], name: str) -> tuple[list[str], int]:
    """Markdown lines of a paired seed study (two variants, paired difference per metric)."""
    summary = report.get("summary")
    if not isinstance(summary, Mapping) or "seeds" not in summary:
        raise ReadmeError(f"{name}: 'summary' with 'seeds' is required")
    metrics = [k for k, v in summary.items() if isinstance(v, Mapping) and "paired_difference" in v]
    if not metrics:
        raise ReadmeError(f"{name}: no metric in 'summary' has a 'paired_difference'")
    variants = [k for k in summary[metrics[0]] if k != "paired_difference"]
    lines = [
        "| metric | " + " | ".join(_study_label(v) for v in variants)
        + f" | paired difference | {_study_label(variants[0])} better in | sign-flip p |",
        "|---|" + "---|" * (len(variants) + 3),
    ]
    for metric in metrics:
        block = summary[metric]
        diff = block["paired_difference"]
        better = f"{diff.get(variants[0] + '_better_in', '?')} of {diff.get('of', '?')} seeds"
        p_value = diff.get("sign_flip_p")
        lines.append(
            f"| {_study_label(metric)} | " + " | ".join(_auc(block[v]) for v in variants)
            + f" | {diff['mean']:+.{AUC_DECIMALS}f} ± {diff['std']:.{AUC_DECIMALS}f} | {better} | "
            + ("—" if p_value is None else f"{p_value:.3f}") + " |"
        )
    return lines, len(summary["seeds"])


def _ratio(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3g}"


def render_perf_summary(report: Mapping[str, Any], name: str) -> tuple[list[str], int]:
    """Markdown lines of ``ega perf``'s ``summary.json`` (one run: no seeds)."""
    try:
        speedup = report["kernel_speedup"]
        latency = report.get("latency", {})
        flops = report["flops_measured_over_formula"]
    except KeyError as error:
        raise ReadmeError(f"{name}: lacks {error}") from None
    exact = sum(1 for v in flops.values() if v is not None and abs(v - 1.0) < FLOPS_TOLERANCE)
    lines = [
        "| what | measured |",
        "|---|---|",
        f"| growth exponent in N of full EGA-V1 inference: time / memory | "
        f"N^{_ratio(report.get('inference_growth_exponent'))} / N^{_ratio(latency.get('inference_memory_exponent'))} |",
        "| kernel torch path vs naive eager, forward: " + ", ".join(f"`{k}`" for k in speedup) + " | "
        + " / ".join(f"{_ratio(v)}×" for v in speedup.values()) + " faster |",
        f"| FLOPs counted by `FlopCounterMode` / the formulas of `egakit.flops` | "
        f"{exact} of {len(flops)} (module, forward or train) entries within {FLOPS_TOLERANCE:.0%} of 1 |",
    ]
    for system, cross in report.get("compare", {}).get("crossover", {}).items():
        lines.append(
            f"| {system} / EGA-V1 at the largest N: time, FLOPs | "
            f"{_ratio(cross.get('time_over_ega_at_largest_N'))}×, {_ratio(cross.get('flops_over_ega_at_largest_N'))}× |"
        )
    for claim in report.get("paper_claims", []):
        lines.append(f"| EGA-V1 claim: {claim['claim']} | {'holds' if claim['holds'] else 'does not follow from the formulas'} |")
    return lines, 1


def _perf_provenance(report: Mapping[str, Any]) -> str:
    device = report.get("device_name") or report.get("device", "?")
    commit = report.get("commit", "")
    if commit and report.get("dirty"):
        commit += DIRTY_SUFFIX
    return f"Measured on {device}, torch {report.get('torch', '?')}; {_commit_text(commit)}; one run per suite."


def _renderer(report: Mapping[str, Any]) -> Callable[[Mapping[str, Any], str], tuple[list[str], int]]:
    if "rows" in report:
        return render_evaluation_table
    if "summary" in report:
        return render_paired_study
    if "kernel_speedup" in report:
        return render_perf_summary
    raise ReadmeError("unknown report schema (expected 'rows' or 'summary')")


def load_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReadmeError(f"{path}: report not found") from None
    except json.JSONDecodeError as error:
        raise ReadmeError(f"{path}: not valid JSON ({error})") from None


def system_worlds(systems_dir: Path) -> dict[str, tuple]:
    """System name → the world its results file was measured on (fingerprint when recorded, else
    directory, preset, seed and mean candidates per request), from ``<reports>/systems/*.json``."""
    worlds: dict[str, tuple] = {}
    for path in sorted(systems_dir.glob("*.json")) if systems_dir.is_dir() else []:
        result = load_report(path)
        world = result.get("world") if isinstance(result.get("world"), Mapping) else {}
        key = (world.get("fingerprint"),) if world.get("fingerprint") else (
            world.get("dir"), world.get("preset"), world.get("seed"), world.get("candidates_mean"))
        worlds[str(result.get("system"))] = key
    return worlds


def mixed_worlds_line(report: Mapping[str, Any], worlds: Mapping[str, tuple]) -> Optional[str]:
    """A line saying the table is withheld when its rows come from more than one world, else None."""
    keys = {worlds[row["system"]] for row in report.get("rows", []) if row.get("system") in worlds}
    if len(keys) < 2:
        return None
    sizes = sorted({f"{key[-1]:,.0f}" for key in keys if len(key) > 1 and isinstance(key[-1], (int, float))})
    detail = f" (mean candidates per request {' and '.join(sizes)})" if sizes else ""
    return (f"Not shown: its rows were measured on {len(keys)} different worlds{detail}, so they are not "
            "comparable. `ega evaluate` now refuses to build such a table; it re-measures it on one world.")


def render_report(report: Mapping[str, Any], heading: str, name: str) -> str:
    """One report as a Markdown section: heading, provenance line, table, source file."""
    try:
        render = _renderer(report)
    except ReadmeError as error:
        raise ReadmeError(f"{name}: {error}") from None
    lines, seeds = render(report, name)
    provenance = _perf_provenance(report) if render is render_perf_summary else provenance_line(report, seeds)
    return "\n".join([f"{SECTION_PREFIX} {heading}", "", provenance, "", *lines, "", f"Source: `{name}`."])


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def render_block(
    reports_dir: Path = REPORTS,
    perf_summary: Optional[Path] = PERF_SUMMARY,
    files: Sequence[tuple[str, str]] = RESULT_FILES,
    root: Path = REPO,
) -> str:
    """The text between the markers: every report of ``files`` found in ``reports_dir``, then the
    performance summary when ``perf_summary`` exists."""
    sections = []
    worlds = system_worlds(reports_dir / "systems")
    for filename, heading in files:
        path = reports_dir / filename
        if path.exists():
            report = load_report(path)
            withheld = mixed_worlds_line(report, worlds) if "rows" in report else None
            if withheld:
                sections.append("\n".join([f"{SECTION_PREFIX} {heading}", "", withheld, "",
                                            f"Source: `{_shown(path, root)}`."]))
            else:
                sections.append(render_report(report, heading, _shown(path, root)))
    if not sections:
        raise ReadmeError(f"{reports_dir}: none of {[f for f, _ in files]} is there")
    if perf_summary is not None and perf_summary.exists():
        sections.append(render_report(load_report(perf_summary), PERF_HEADING, _shown(perf_summary, root)))
    return "\n\n".join(sections)


# --------------------------------------------------------------------------- README


def _split(text: str, readme: Path) -> tuple[str, str, str]:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReadmeError(f"{readme}: needs exactly one {BEGIN} followed by one {END}")
    head, rest = text.split(BEGIN)
    body, tail = rest.split(END)
    return head, body, tail


def current_block(readme: Path = README) -> str:
    """The text now between the markers of ``readme`` (without the surrounding newlines)."""
    return _split(readme.read_text(), readme)[1].strip("\n")


def rewrite(readme: Path = README, reports_dir: Path = REPORTS, perf_summary: Optional[Path] = PERF_SUMMARY) -> bool:
    """Replace the block of ``readme`` with :func:`render_block`; True when the file changed."""
    text = readme.read_text()
    head, _, tail = _split(text, readme)
    new = f"{head}{BEGIN}\n{render_block(reports_dir, perf_summary, root=readme.parent)}\n{END}{tail}"
    if new == text:
        return False
    readme.write_text(new)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m egakit.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--reports", type=Path, default=REPORTS, help="folder of the report JSON files")
    parser.add_argument("--perf-summary", type=Path, default=PERF_SUMMARY, help="ega perf's summary.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's block is out of date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = current_block(args.readme) != render_block(args.reports, args.perf_summary, root=args.readme.parent)
            if stale:
                print(f"{args.readme}: results block is out of date; run python -m egakit.readme", file=sys.stderr)
            return int(stale)
        changed = rewrite(args.readme, args.reports, args.perf_summary)
    except ReadmeError as error:
        print(f"egakit.readme: {error}", file=sys.stderr)
        return 1
    print(f"{args.readme}: {'rewritten' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
