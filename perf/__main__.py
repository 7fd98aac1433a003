"""``python -m egakit.perf <suite>``: run a performance suite, write its JSON and PNG, refresh the summary.

Suites: ``flops``, ``latency``, ``kernels``, ``compare``, ``all`` (the four in that order).

    python -m egakit.perf all --device cpu              # CPU-sized model, 1 torch thread (shared machine)
    python -m egakit.perf latency --device cpu --paper  # the paper's model sizes (slow on CPU)
    python -m egakit.perf all --device cuda             # on a GPU: paper sizes, Triton kernels
    python -m egakit.perf flops --quick --out /tmp/p    # smoke run, seconds

Output: ``<out>/<suite>_<device>[_paper].json`` (+ ``.png``), ``<out>/summary_<device>.json`` and
``<out>/summary.json`` (the latest device's). Every JSON carries the device name, torch / triton
versions and the git commit.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from egakit.perf import common, plots, summary

SUITES = ("flops", "latency", "kernels", "compare")


def _runner(suite: str) -> tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], None]]:
    """(run, print_report) of a suite, imported on demand."""
    if suite == "flops":
        from egakit.perf import flops_suite as module
    elif suite == "latency":
        from egakit.perf import latency as module
    elif suite == "kernels":
        from egakit.perf import kernels as module
    else:
        from egakit.perf import compare as module
    return module.run, module.print_report


def run_suite(suite: str, args: argparse.Namespace) -> Path:
    """Run one suite with the CLI options; returns its JSON path."""
    run, report = _runner(suite)
    kwargs: dict[str, Any] = {"quick": args.quick}
    if suite in ("flops", "latency", "compare"):
        kwargs["paper_config"] = args.paper
    if suite in ("latency", "compare") and args.ns:
        kwargs["ns"] = tuple(args.ns)
    if suite in ("latency", "kernels", "compare") and args.repeats:
        kwargs["repeats"] = args.repeats
    if suite == "latency":
        kwargs["threads"] = torch.get_num_threads()
        if args.blocks:
            kwargs["blocks"] = tuple(args.blocks)
    common.log(f"== perf {suite} on {args.device} ==")
    payload = run(args.device, **kwargs)
    tag = "paper" if args.paper and args.device == "cpu" and suite != "kernels" else ""
    path = common.write_json(common.result_path(args.out, suite, args.device, tag), payload)
    png = plots.plot(suite, payload, path)
    report(payload)
    print(f"wrote {path}" + (f" and {png.name}" if png else ""), flush=True)
    return path


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m egakit.perf", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=(*SUITES, "all"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="tiny model, small N, 1 repeat: a smoke run")
    parser.add_argument("--paper", action="store_true", help="the paper's model sizes (default on CUDA)")
    parser.add_argument("--out", default=str(common.DEFAULT_OUT), help="result folder (default perf/results)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: 1 on CPU, the machine is shared; torch's default on CUDA)")
    parser.add_argument("--ns", type=int, nargs="+", help="candidate counts (latency, compare)")
    parser.add_argument("--repeats", type=int, help="timed repeats per point")
    parser.add_argument("--blocks", nargs="+", help="latency: only these blocks (e.g. ega_v1 gcf_layer)")
    parser.add_argument("--wandb-dir", default="runs",
                        help="where the W&B run (job_type perf: results, plots, summary) goes (default: runs)")
    parser.add_argument("--no-wandb", action="store_true", help="no W&B run")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> list[Path]:
    args = parse_args(argv)
    args.device = common.resolve_device(args.device)
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    paths = [run_suite(s, args) for s in (SUITES if args.suite == "all" else (args.suite,))]
    summary_path = summary.write(args.out, args.device)
    print(f"wrote {summary_path}", flush=True)
    if not args.no_wandb:
        log_to_wandb(args, paths, summary_path)
    return paths


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested JSON, keyed ``a/b/c`` (lists are skipped: per-N curves go in
    the result files and plots)."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}/"))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix.rstrip("/")] = float(data)
    return out


def log_to_wandb(args: argparse.Namespace, paths: list[Path], summary_path: Path) -> Optional[str]:
    """One W&B run (job_type ``perf``, named ``perf-<suite>-<device>``, offline unless WANDB_MODE
    says otherwise): the arguments as config, the summary's numbers as the run summary, each
    suite's plot as an image and the result JSONs as a ``perf-results`` artifact. Returns the run's
    directory (None without wandb)."""
    from egakit.tracking import offline_run

    config = {k: v for k, v in vars(args).items() if k not in ("wandb_dir", "no_wandb")}
    name = f"perf-{args.suite}-{args.device}"
    with offline_run("perf", name, group="perf", config=config, save_dir=args.wandb_dir) as run:
        if run is None:
            return None
        import wandb

        run.summary.update(_numbers(json.loads(Path(summary_path).read_text())))
        images = {p.stem: wandb.Image(str(p.with_suffix(".png"))) for p in paths if p.with_suffix(".png").is_file()}
        if images:
            run.log(images)
        artifact = wandb.Artifact(f"{name}-results", type="perf-results")
        for path in [*paths, Path(summary_path)]:
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)
        return str(Path(run.dir).parent)


if __name__ == "__main__":
    main()
