"""The `ega` command (also `python -m egakit`, and `lightning` as an alias).

    ega fit|validate|test|predict -c configs/...yaml   LightningCLI: any LightningModule and
                                                      LightningDataModule named in the config
    ega world --preset tiny|small|city --out DIR      make a synthetic LBS world
    ega allocate --ckpt CKPT --world DIR --request F  one request -> winners and payments (JSON)
    ega evaluate -c configs/eval/v1.yaml              the V1 Tables 1-3 on truth and evaluator
    ega perf all --device cpu                         the performance suite (= python -m egakit.perf)
    ega demo [--runs DIR]                             the README's main job on the small world
    ega configs list | export DIR [--force]           the configs packaged with egakit

    ega --version                                     egakit, torch, lightning and triton versions

A failure ends with one message naming what went wrong and where, and exit status 2 (``--debug``
shows the traceback); a run stopped by SIGINT / SIGTERM saves ``last.ckpt`` and exits with 130 /
143. W&B runs offline unless the user has set ``WANDB_MODE``; when wandb cannot be imported the
configured WandbLogger is replaced by a CSVLogger in the same directory. A W&B run is named after
its config (``pretrain``), grouped by the config's folder (``v1-tiny``) and typed by the command
(``job_type`` fit/validate/test/predict); it holds the resolved config, the last validation
metrics and, after ``fit``, the checkpoints (with their MODEL_CARD.md) as a model artifact
(:mod:`egakit.callbacks`, :mod:`egakit.tracking`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from egakit.warning_filters import quiet_known_warnings

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: The names this program is installed under (``lightning`` is an alias of ``ega``).
PROGRAM_NAMES = ("ega", "lightning")
DEFAULT_PROG = "ega"
#: Exit status of a command stopped by bad input, config, checkpoint or world (as argparse's).
EXIT_ERROR = 2
#: Exit status of an unexpected failure (a bug: rerun with --debug and report it).
EXIT_INTERNAL = 1

USAGE = """usage: ega <command> [options]

Training and inference (LightningCLI; `lightning <command>` is the same program):
  fit        train a model:                ega fit -c configs/v1/pretrain.yaml [--run_name NAME]
             (a variant: ega fit -c configs/v1/pretrain.yaml -c configs/v1/ablations/no_gcf.yaml)
  validate   run the validation loop:      ega validate -c CONFIG --ckpt_path CKPT
  test       run the test loop:            ega test -c CONFIG --ckpt_path CKPT
  predict    run prediction:               ega predict -c CONFIG --ckpt_path CKPT
             (JSON lines in runs/predictions/predictions.jsonl: winners and payments,
             or pCTR per candidate for a pre-training / reward checkpoint)
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

    parser = argparse.ArgumentParser(prog="ega world", description="Make a synthetic LBS ad world (docs/design.md §1).")
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


def invoked_prog(argv0: Optional[str] = None) -> str:
    """The name the user typed: ``ega`` or ``lightning`` (the alias); ``ega`` otherwise
    (``python -m egakit``, tests)."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name if (argv0 or sys.argv) else DEFAULT_PROG
    return name if name in PROGRAM_NAMES else DEFAULT_PROG


def version_text() -> str:
    """``ega --version``: egakit's version and those of the libraries it runs on."""
    import importlib.metadata as metadata

    from egakit import __version__

    parts = [f"egakit {__version__}"]
    for dist in ("torch", "lightning", "triton"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


def _known_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message says what and where (bad input, config, checkpoint or world): every
    egakit error of that kind (CheckpointError, WorldDataError, RequestError, EvalConfigError,
    ConfigNotFoundError) is a ValueError or FileNotFoundError."""
    from egakit.errors import NonFiniteOutputError

    return (ValueError, TypeError, FileNotFoundError, NonFiniteOutputError)


def error_summary(err: BaseException) -> str:
    """The message of ``err`` on one line. For jsonargparse's "Does not validate against any of the
    Union subtypes" (a class whose constructor raised while the config was parsed), the
    constructors' own reasons."""
    lines = str(err).splitlines()
    if "Errors:" in [line.strip() for line in lines]:
        start = [line.strip() for line in lines].index("Errors:") + 1
        reasons = [line.strip()[2:] for line in lines[start:]
                   if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line]
        if reasons:
            return "; ".join(reasons)
    return " ".join(line.strip() for line in lines if line.strip())


def _run(command: str, argv: list[str], prog: str) -> int:
    if command in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[command](argv[1:])
    from egakit.lightning_cli import run_lightning_cli
    from egakit.lit.interrupt import interrupt_exit_status

    try:
        run_lightning_cli(argv, prog=prog)
    except SystemExit as stop:  # Lightning exits after an interrupt; jsonargparse after --help or a bad flag
        status = interrupt_exit_status()
        if status is not None:
            return status
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_ERROR)
    return interrupt_exit_status() or 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ega`` (and of ``lightning``, ``python -m egakit``). A failure ends with
    one message on stderr naming what went wrong and a non-zero status (2: bad input, config,
    checkpoint or world; 1: unexpected; 130 / 143: interrupted); ``--debug`` shows the traceback."""
    prog = invoked_prog() if argv is None else DEFAULT_PROG
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    os.environ.setdefault("WANDB_MODE", "offline")
    quiet_known_warnings()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.replace("usage: ega", f"usage: {prog}"))
        return 0
    if argv[0] in ("-V", "--version"):
        print(version_text())
        return 0
    command = argv[0]
    if command not in EXTRA_COMMANDS and command not in LIGHTNING_SUBCOMMANDS and not command.startswith("-"):
        print(f"{prog}: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return _run(command, argv, prog)
    except ModuleNotFoundError as err:
        if debug:
            raise
        print(f"{prog}: error: {err}. The CLI needs the training extra: pip install 'egakit[train]'", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; the traceback only when asked for
        if debug:
            raise
        if isinstance(err, _known_errors()):
            print(f"{prog} {command}: error: {error_summary(err)}", file=sys.stderr)
            return EXIT_ERROR
        print(f"{prog} {command}: error: {type(err).__name__}: {error_summary(err)} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_INTERNAL
