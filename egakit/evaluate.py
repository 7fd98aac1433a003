"""``ega evaluate -c configs/eval/v1.yaml``: the V1 Tables 1–3 and Fig. 5 analogues (docs/design.md §8).

Runs every system of the config on the world's test split and writes, under the config's
``out_dir`` (default ``reports/v1``): ``table1.json`` (MCA, FS-LTR, EGA-V1 and the classic GSP /
VCG on the true CTR), ``table2.json`` (EGA-V1 ablations), ``table3.json`` (cross features), the
same as Markdown, and ``scaling.png`` (+ ``scaling.md``). Each row says its source: ``oracle``
(truth) or ``evaluator`` (the paper's replay with the EGA reward model). Finished systems are
skipped on a rerun (``--force`` re-evaluates). See :mod:`egakit.evaluation` for the details.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from egakit.checkpoint import CheckpointError
from egakit.errors import WorldDataError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ega evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="evaluation config (configs/eval/v1.yaml)")
    parser.add_argument("--seeds", type=int, default=None, help="repeats per system; mean ± std (default: the config's)")
    parser.add_argument("--out", default=None, help="output directory (default: the config's out_dir)")
    parser.add_argument("--systems", nargs="+", default=None, metavar="NAME", help="evaluate only these systems")
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate only the first n requests of the split")
    parser.add_argument("--force", action="store_true", help="re-evaluate systems whose results exist")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--wandb-dir", default="runs",
                        help="where the W&B run (job_type evaluate: tables and plots) goes (default: runs)")
    parser.add_argument("--no-wandb", action="store_true", help="no W&B run")
    return parser


def cmd_evaluate(argv: Sequence[str]) -> int:
    """Entry point of ``ega evaluate``; returns the exit status (2 on a bad config or checkpoint)."""
    args = _parser().parse_args(list(argv))
    from egakit.evaluation import EvalConfigError, load_config, run_evaluation

    try:
        config = load_config(args.config)
        if args.out:
            config.out_dir = args.out
        if args.max_requests is not None:
            if args.max_requests < 1:
                raise EvalConfigError("--max-requests", "value", "must be >= 1")
            config.max_requests = args.max_requests
        if args.seeds is not None and args.seeds < 1:
            raise EvalConfigError("--seeds", "value", "must be >= 1")
        summary = run_evaluation(
            config, seeds=args.seeds, force=args.force, only=args.systems, progress=not args.quiet, device=args.device,
            wandb_dir=None if args.no_wandb else args.wandb_dir,
        )
    except (EvalConfigError, CheckpointError, WorldDataError) as err:
        print(f"ega evaluate: {err}", file=sys.stderr)
        return 2
    for path in summary.files:
        print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    return cmd_evaluate(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
