"""Set-aware vs point-wise pre-trained pCTR over training seeds (V1 Table 2's −gcf row; issue 5).

    python -m studies.pointwise_study --seeds 0 1 2

For each training seed, pre-trains the set-aware RecFormer (``configs/v1/pretrain.yaml``) and the
point-wise ``-gcf`` variant of the same size and budget (the same config plus
``configs/v1/ablations/no_gcf.yaml``),
then runs ``ega test`` on the whole test split (every candidate) and reads two AUCs:

- ``logged_auc`` (``test/auc``): against the logged labels, exposed clicks and platform labels
  (the paper's protocol);
- ``oracle_auc`` (``test/true_auc``): against clicks drawn from the true slot-free CTR of every
  candidate (the world knows it).

Every seed is a run of its own, ``--run_name seeds/s<seed>`` (``<runs>/seeds/s<seed>[-no_gcf]/``),
never the demo's run (the demo pre-trains with a shorter budget, ``configs/demo/small/pretrain.yaml``). Training is skipped
when the checkpoint exists, and a score cached in the JSON is reused only for the checkpoint it
came from (path and mtime), so an interrupted study resumes and a retrained one re-scores;
seeds scored earlier and not asked for again stay in the report.
``--jobs N`` trains and scores N runs at once in worker processes (2 on a 2-core machine: the
runs are single-threaded-bound). The summary gives, per metric, the mean ± std of each variant,
the paired difference and the exact two-sided p-value of the paired sign-flip test (5 seeds can
never go below p = 0.0625; 10 can reach 0.002). Writes ``<out>.json`` and ``<out>.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from egakit.demo import ABLATION_DIR, CONFIG_RUNS, checkpoint_of, config_path, fit
from egakit.evaluation.report import write_json
from egakit.provenance import commit_label

#: Each variant: the config files composed for its ``ega fit`` (names below configs/).
VARIANTS = {"set_aware": ("v1/pretrain.yaml",), "point_wise_no_gcf": ("v1/pretrain.yaml", f"{ABLATION_DIR}/no_gcf.yaml")}
METRICS = {"logged_auc": "test/auc", "oracle_auc": "test/true_auc"}
DEFAULT_OUT = Path("reports/v1/set_aware_vs_pointwise")


def seed_run_name(seed: int) -> str:
    """The run of training seed ``seed`` (a variant adds its suffix: ``seeds/s3-no_gcf``)."""
    return f"seeds/s{seed}"


def seed_args(variant: str, seed: int, runs: Path) -> list[str]:
    """The ``ega fit`` arguments of one (variant, seed) run after the subcommand: the variant's
    config files, the world under ``runs``, ``seed_everything`` and the run ``seeds/s<seed>``."""
    args = []
    for name in VARIANTS[variant]:
        args += ["-c", str(config_path(name))]
    return [*args, f"--runs_dir={runs}", f"--run_name={seed_run_name(seed)}", f"--seed_everything={seed}",
            f"--data.init_args.world_dir={runs / 'demo' / 'world'}"]


def checkpoint_stamp(ckpt: Path) -> str:
    """``path@mtime`` of a checkpoint: a cached score counts only for the checkpoint it came from
    (a retrained phase or a regenerated world makes it stale)."""
    return f"{ckpt}@{ckpt.stat().st_mtime_ns}"


def test_metrics(args: Sequence[str], ckpt: Path) -> dict[str, float]:
    """``ega test <args> --ckpt_path ckpt`` in this process (no logger): the study's metrics."""
    from egakit.lightning_cli import run_lightning_cli

    cli = run_lightning_cli(["test", *args, "--ckpt_path", str(ckpt), "--trainer.logger=false"])
    found = cli.trainer.callback_metrics
    missing = [key for key in METRICS.values() if key not in found]
    if missing:
        raise RuntimeError(f"{ckpt}: ega test logged no {missing}")
    return {name: float(found[key]) for name, key in METRICS.items()}


def sign_flip_p_value(diffs: Sequence[float], max_exact: int = 16, draws: int = 1 << 16) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of mean(diffs) = 0: the share
    of sign assignments whose |mean| is at least the observed one (all 2^n of them up to
    ``max_exact`` pairs, else ``draws`` random ones, seeded). Needs no normality of the seeds."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return 1.0
    if d.size <= max_exact:
        signs = 1 - 2 * ((np.arange(1 << d.size)[:, None] >> np.arange(d.size)) & 1)
    else:
        signs = np.random.default_rng(0).choice([-1, 1], size=(draws, d.size))
    observed = abs(d.mean())
    return float(np.mean(np.abs(signs @ d) / d.size >= observed - 1e-12))


def summarise(per_seed: dict[str, dict[str, dict[str, float]]]) -> dict:
    """Mean ± std per variant and metric, and the paired difference (set-aware − point-wise)."""
    seeds = sorted(set(per_seed["set_aware"]) & set(per_seed["point_wise_no_gcf"]), key=int)
    out: dict = {"seeds": [int(s) for s in seeds]}
    for metric in METRICS:
        row = {}
        for variant in VARIANTS:
            values = [per_seed[variant][s][metric] for s in seeds]
            row[variant] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        diffs = [per_seed["set_aware"][s][metric] - per_seed["point_wise_no_gcf"][s][metric] for s in seeds]
        row["paired_difference"] = {
            "mean": statistics.fmean(diffs), "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "set_aware_better_in": sum(d > 0 for d in diffs), "of": len(diffs),
            "sign_flip_p": sign_flip_p_value(diffs),
        }
        out[metric] = row
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# Set-aware vs point-wise pre-trained pCTR (V1 Table 2, −gcf row; issue 5)", "",
        f"{result['what']}. World: {result['world']}. Report written at commit {result['commit']}; each seed's "
        "score is cached with the checkpoint it came from (path@mtime in the JSON), so seeds scored by an earlier "
        "run of the study keep that run's score.", "",
        "*logged* AUC: " + result["metrics"]["logged_auc"] + "; *oracle* AUC: " + result["metrics"]["oracle_auc"] + ".", "",
        "| seed | logged, set-aware | logged, −gcf | oracle, set-aware | oracle, −gcf |", "|---|---|---|---|---|",
    ]
    sa, pw = result["per_seed"]["set_aware"], result["per_seed"]["point_wise_no_gcf"]
    for seed in s["seeds"]:
        k = str(seed)
        lines.append(f"| {seed} | {sa[k]['logged_auc']:.4f} | {pw[k]['logged_auc']:.4f} | "
                     f"{sa[k]['oracle_auc']:.4f} | {pw[k]['oracle_auc']:.4f} |")
    ms = lambda m, v: f"{s[m][v]['mean']:.4f} ± {s[m][v]['std']:.4f}"  # noqa: E731
    lines.append(f"| mean ± std | {ms('logged_auc', 'set_aware')} | {ms('logged_auc', 'point_wise_no_gcf')} | "
                 f"{ms('oracle_auc', 'set_aware')} | {ms('oracle_auc', 'point_wise_no_gcf')} |")
    d = {m: s[m]["paired_difference"] for m in METRICS}
    lines += ["", "Paired difference (set-aware − −gcf): " + ", ".join(
        f"{m.split('_')[0]} {d[m]['mean']:+.4f} ± {d[m]['std']:.4f} (set-aware better in {d[m]['set_aware_better_in']} of "
        f"{d[m]['of']} seeds, sign-flip p = {d[m]['sign_flip_p']:.3f})"
        for m in METRICS) + "."]
    crowd = result.get("world_crowding")
    if crowd:
        lines += ["", f"The world's set-level term (crowding by strong same-category rivals): std "
                      f"{crowd['std']:.3f} logit within a request, {crowd['set_dependent_std']:.3f} of it varying for the "
                      f"same ad between requests; set-dependent share of the within-request logit variance "
                      f"{crowd['set_dependent_share_of_logit_var']:.1%} (`ega world` prints these)."]
    return "\n".join(lines) + "\n"


def run_paths(variant: str, seed: int, runs: Path) -> tuple[list[str], Path]:
    """(``ega fit`` arguments after the subcommand, last.ckpt) of one (variant, seed) run."""
    files = [config_path(name) for name in VARIANTS[variant]]
    return seed_args(variant, seed, runs), checkpoint_of(files, runs, run_name=seed_run_name(seed))


def study_commands(seeds: Sequence[int], runs: Path) -> list[str]:
    """The shell commands that reproduce each (variant, seed) run of the report."""
    commands = []
    for seed in seeds:
        for variant in VARIANTS:
            args, ckpt = run_paths(variant, seed, runs)
            line = " ".join(args)
            commands.append(f"ega fit {line}; ega test {line} --ckpt_path {ckpt} --trainer.logger=false")
    return commands


def fit_and_score(args: Sequence[str], ckpt: Path, label: str) -> dict[str, float]:
    """Train unless the run's checkpoint exists, then score it (:func:`test_metrics`)."""
    if not ckpt.is_file():
        print(f"[study] training {label} -> {ckpt}", flush=True)
        fit(["fit", *args])
    print(f"[study] testing {label}", flush=True)
    return test_metrics(args, ckpt)


def score_in_subprocess(variant: str, seed: int, runs: Path, log: Path, threads: int) -> dict[str, float]:
    """:func:`fit_and_score` in a worker process with ``threads`` CPU threads; its output goes to
    ``log`` and its metrics come back through a JSON file beside it."""
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"[study] {variant} seed {seed}: worker started ({threads} threads), log {log}", flush=True)
    with log.open("w") as stream:
        done = subprocess.run(
            [sys.executable, "-m", "studies.pointwise_study", "--runs", str(runs),
             "--score", variant, str(seed), str(result)],
            env=env, stdout=stream, stderr=subprocess.STDOUT,
        )
    if done.returncode != 0 or not result.is_file():
        raise RuntimeError(f"study worker for {variant} seed {seed} failed (exit {done.returncode}); see {log}")
    return json.loads(result.read_text())


def run_study(
    seeds: Sequence[int], runs: Path, out: Path, world_meta: Optional[dict] = None, jobs: int = 1
) -> dict:
    """Train (when missing) and score every (variant, seed); ``jobs`` > 1 runs that many in
    parallel worker processes, each with ``cpu_count // jobs`` threads. Seeds already in ``out``'s
    JSON and not asked for are kept, so the summary pairs every seed scored so far."""
    json_path = out.with_suffix(".json")
    cached = json.loads(json_path.read_text()) if json_path.is_file() else {}
    per_seed: dict = {v: dict(cached.get("per_seed", {}).get(v, {})) for v in VARIANTS}
    todo = []
    for seed in seeds:
        for variant in VARIANTS:
            args, ckpt = run_paths(variant, seed, runs)
            if ckpt.is_file() and per_seed[variant].get(str(seed), {}).get("checkpoint") == checkpoint_stamp(ckpt):
                continue  # scored from this very checkpoint already
            todo.append((variant, seed, args, ckpt))

    def record(variant: str, seed: int, metrics: dict[str, float], ckpt: Path) -> None:
        per_seed[variant][str(seed)] = {**metrics, "checkpoint": checkpoint_stamp(ckpt)}
        write_json(json_path, {"per_seed": per_seed})  # resumable

    if jobs <= 1:
        for variant, seed, args, ckpt in todo:
            record(variant, seed, fit_and_score(args, ckpt, f"{variant} seed {seed}"), ckpt)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        logs = runs / "seeds" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(score_in_subprocess, variant, seed, runs, logs / f"{variant}_s{seed}.log", threads): (variant, seed, ckpt)
                for variant, seed, _, ckpt in todo
            }
            for future in as_completed(futures):
                variant, seed, ckpt = futures[future]
                record(variant, seed, future.result(), ckpt)
                print(f"[study] {variant} seed {seed}: {per_seed[variant][str(seed)]}", flush=True)
    world = runs / "demo" / "world"
    result = {
        "what": ("pre-trained q-hat of the set-aware RecFormer (configs/v1/pretrain.yaml) vs the point-wise -gcf "
                 "variant (configs/v1/pretrain.yaml + configs/v1/ablations/no_gcf.yaml), same size and budget, on the whole test split "
                 "(every candidate: eval_mode full), one pre-training run per seed"),
        "metrics": {
            "logged_auc": "AUC against the logged labels (exposed clicks and platform labels): the paper's protocol, `test/auc`",
            "oracle_auc": "AUC against clicks drawn from the true slot-free CTR of every candidate, `test/true_auc`",
        },
        "world": f"{world} (small preset, seed 0)",
        "world_crowding": (world_meta or {}).get("crowding"),
        "commit": commit_label(),
        "commands": study_commands(sorted({int(k) for v in VARIANTS for k in per_seed[v]}), runs),
        "per_seed": per_seed,
        "summary": summarise(per_seed),
    }
    write_json(json_path, result)
    out.with_suffix(".md").write_text(markdown(result))
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.pointwise_study", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=Path(CONFIG_RUNS), help="where the demo's world and checkpoints are")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report path without suffix (.json and .md)")
    parser.add_argument("--jobs", type=int, default=1, help="(variant, seed) runs trained and scored at once")
    parser.add_argument("--score", nargs=3, metavar=("VARIANT", "SEED", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.score:  # worker mode of --jobs
        variant, seed, result = args.score[0], int(args.score[1]), Path(args.score[2])
        run_args, ckpt = run_paths(variant, seed, args.runs)
        write_json(result, fit_and_score(run_args, ckpt, f"{variant} seed {seed}"))
        return 0
    from egakit.sim.stats import world_stats

    crowding = world_stats(args.runs / "demo" / "world")["effects"]["crowding"]
    result = run_study(args.seeds, args.runs, args.out, {"crowding": crowding}, jobs=args.jobs)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
