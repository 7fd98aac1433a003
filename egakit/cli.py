"""The `ega` command (also `python -m egakit`, and `lightning` as an alias).

    ega fit|validate|test|predict -c configs/...yaml   LightningCLI: any LightningModule and
                                                      LightningDataModule named in the config
    ega world --preset tiny|small|city --out DIR      make a synthetic LBS world
    ega allocate --ckpt CKPT --world DIR --request F  one request -> winners and payments (JSON)
    ega evaluate -c configs/eval/v1.yaml              the V1 Tables 1-3 on truth and evaluator
    ega perf all --device cpu                         the performance suite (= python -m egakit.perf)
    ega demo [--runs DIR]                             the README's main job on the small world
    ega configs list | export DIR [--force]           the configs packaged with egakit

W&B runs offline unless the user has set ``WANDB_MODE``; when wandb cannot be imported the
configured WandbLogger is replaced by a CSVLogger in the same directory.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Optional, Sequence

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

USAGE = """usage: ega <command> [options]

Training and inference (LightningCLI; `lightning <command>` is the same program):
  fit        train a model:                ega fit -c configs/v1/pretrain.yaml [--run_name NAME]
             (a variant: ega fit -c configs/v1/pretrain.yaml -c configs/v1/ablations/no_gcf.yaml)
  validate   run the validation loop:      ega validate -c CONFIG --ckpt_path CKPT
  test       run the test loop:            ega test -c CONFIG --ckpt_path CKPT
  predict    run prediction:               ega predict -c CONFIG --ckpt_path CKPT
             (each takes --help and --print_config)

Worlds and jobs:
  world      make a synthetic LBS world:   ega world --preset tiny --out runs/worlds/tiny
  allocate   one request -> slots, prices: ega allocate --ckpt CKPT --world DIR --request-id ID
  evaluate   Tables 1-3 of EGA-V1:         ega evaluate -c configs/eval/v1.yaml [--seeds 5]
  perf       the performance suite:        ega perf all --device cpu
  demo       the small-world demo:         ega demo [--runs runs]
  configs    the packaged configs:         ega configs list | ega configs export DIR [--force]

A config path (-c configs/...) names the local file when it exists, else the copy packaged with egakit.
"""


# --------------------------------------------------------------------------- world / demo


def _world_parser() -> argparse.ArgumentParser:
    from egakit.sim.presets import PRESETS

    parser = argparse.ArgumentParser(prog="ega world", description="Make a synthetic LBS ad world (SPEC §1).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--out", required=True, help="directory to write the world into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def cmd_world(argv: Sequence[str]) -> int:
    args = _world_parser().parse_args(argv)
    from egakit.sim import generate_world
    from egakit.reporting import format_world_stats
    from egakit.sim.stats import world_stats

    generate_world(args.preset, args.out, seed=args.seed, progress=not args.quiet)
    print(format_world_stats(world_stats(args.out)))
    return 0


def run_lightning_cli(args: Sequence[str]) -> Any:
    """``ega fit|validate|test|predict`` (:func:`egakit.lightning_cli.run_lightning_cli`)."""
    from egakit.lightning_cli import run_lightning_cli as run

    return run(args)


def cmd_configs(argv: Sequence[str]) -> int:
    from egakit.config_files import cmd_configs as run

    return run(argv)


def cmd_demo(argv: Sequence[str]) -> int:
    from egakit.demo import BUDGETS, CONFIG_RUNS, run_demo

    parser = argparse.ArgumentParser(prog="ega demo", description="Run the small-world demo end to end.")
    parser.add_argument("--runs", default=CONFIG_RUNS,
                        help="where the world, checkpoints and logs go (default: runs, as in the configs)")
    parser.add_argument("--reports", default=None, help="where Table 1 goes (default: the eval config's, reports/v1)")
    parser.add_argument("--preset", default="small", help="world preset (default: small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="redo every stage, even those already done")
    parser.add_argument("--world-only", action="store_true", help="stop after making the world and its statistics")
    parser.add_argument("--full", action="store_true",
                        help="also train the ablations and evaluate every system: Tables 1-3 and the scaling plot")
    parser.add_argument("--ablations", nargs="+", metavar="NAME", default=None,
                        help="with --full: train only these ablations (default: all)")
    parser.add_argument("--budget", choices=BUDGETS, default="demo",
                        help="demo: add the preset's demo budget (configs/demo/<preset>/<phase>.yaml, default); "
                             "full: the configs' own budgets")
    args = parser.parse_args(argv)
    return run_demo(args.runs, args.preset, args.seed, reports=args.reports, force=args.force,
                    world_only=args.world_only, full=args.full, ablations=args.ablations, budget=args.budget)


def cmd_allocate(argv: Sequence[str]) -> int:
    from egakit.allocate import cmd_allocate as run

    return run(argv)


def cmd_evaluate(argv: Sequence[str]) -> int:
    from egakit.evaluate import cmd_evaluate as run

    return run(argv)


def cmd_perf(argv: Sequence[str]) -> int:
    from egakit.perf.__main__ import main as run

    run(list(argv))
    return 0


EXTRA_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "world": cmd_world,
    "allocate": cmd_allocate,
    "evaluate": cmd_evaluate,
    "perf": cmd_perf,
    "demo": cmd_demo,
    "configs": cmd_configs,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = argv[0]
    if command in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[command](argv[1:])
    if command in LIGHTNING_SUBCOMMANDS or command.startswith("-"):
        run_lightning_cli(argv)
        return 0
    print(f"ega: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
