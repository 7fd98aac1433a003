"""The `ega` command (also `python -m egakit`, and `lightning` as an alias).

    ega fit|validate|test|predict -c configs/...yaml   LightningCLI: any LightningModule and
                                                      LightningDataModule named in the config
    ega world --preset tiny|small|city --out DIR      make a synthetic LBS world
    ega allocate --ckpt CKPT --world DIR --request F  one request -> winners and payments (JSON)
    ega evaluate -c configs/eval/v1.yaml              the V1 Tables 1-3 on truth and evaluator
    ega perf all --device cpu                         the performance suite (= python -m egakit.perf)
    ega demo [--runs DIR]                             the README's main job on the small world

W&B runs offline unless the user has set ``WANDB_MODE``; when wandb cannot be imported the
configured WandbLogger is replaced by a CSVLogger in the same directory.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
#: Model constructor arguments filled from the world's world.json when a config leaves them unset.
WORLD_LINKED_ARGS = {"vocab_sizes": "vocab", "num_slots": "K"}
DEFAULT_LOG_DIR = "runs"

USAGE = """usage: ega <command> [options]

Training and inference (LightningCLI; `lightning <command>` is the same program):
  fit        train a model:                ega fit -c configs/v1/pretrain.yaml
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
"""


# --------------------------------------------------------------------------- LightningCLI


def _import_object(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _wandb_available() -> bool:
    try:
        import wandb  # noqa: F401
    except Exception:  # an install broken in any way counts as unavailable
        return False
    return True


def _world_meta_for(config: Any) -> Optional[dict]:
    """world.json of the world the data config points at, or None when there is none."""
    data = config.get("data")
    init_args = getattr(data, "init_args", None) if data is not None else None
    world_dir = getattr(init_args, "world_dir", None) if init_args is not None else None
    if not world_dir:
        return None
    meta_path = Path(world_dir) / "world.json"
    if not meta_path.is_file():
        return None
    from egakit.sim.io import load_world_meta

    return load_world_meta(world_dir)


def inject_world_sizes(config: Any) -> None:
    """Fill the model's world-dependent arguments (vocab sizes, K and, for a model that reads
    explicit cross features, their vocabulary sizes) from world.json.

    Only arguments the chosen model class accepts and the config left as ``None`` are filled, so
    any LightningModule works and explicit values always win.
    """
    model = config.get("model")
    init_args = getattr(model, "init_args", None) if model is not None else None
    if init_args is None:
        return
    missing = [arg for arg in WORLD_LINKED_ARGS if arg in init_args and init_args[arg] is None]
    wants_cross = (
        "cross_vocab_sizes" in init_args
        and init_args["cross_vocab_sizes"] is None
        and bool(_get(init_args.get("model"), "use_cross_features"))
    )
    if not missing and not wants_cross:
        return
    meta = _world_meta_for(config)
    if meta is None:
        return
    for arg in missing:
        init_args[arg] = meta[WORLD_LINKED_ARGS[arg]]
    if wants_cross:  # an EGA-V1 "+ CF" variant: one vocabulary size per explicit cross feature
        from egakit.features.cross import CrossFeatureSpec

        init_args["cross_vocab_sizes"] = CrossFeatureSpec.for_world(meta).column_vocab_sizes


def _get(section: Any, key: str) -> Any:
    """``section[key]`` for a dict or a jsonargparse Namespace; None when absent."""
    if section is None:
        return None
    if isinstance(section, dict):
        return section.get(key)
    return getattr(section, key, None)


def fall_back_to_csv_logger(config: Any) -> None:
    """Swap a configured WandbLogger for a CSVLogger when wandb cannot be imported."""
    trainer = config.get("trainer")
    logger = getattr(trainer, "logger", None) if trainer is not None else None
    loggers = logger if isinstance(logger, list) else [logger]
    for entry in loggers:
        if getattr(entry, "class_path", None) == WANDB_LOGGER and not _wandb_available():
            save_dir = getattr(entry.init_args, "save_dir", None) or DEFAULT_LOG_DIR
            print(f"wandb is not available: logging to CSV under {save_dir}", file=sys.stderr)
            entry.class_path = CSV_LOGGER
            entry.init_args = type(entry.init_args)(save_dir=save_dir, name="egakit")


def _make_cli_class() -> type:
    from lightning.pytorch.cli import LightningCLI

    class EGACLI(LightningCLI):
        """LightningCLI that links models to the world they train on."""

        def instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            inject_world_sizes(config)
            fall_back_to_csv_logger(config)
            super().instantiate_classes()

    return EGACLI


def default_trainer_logger() -> dict:
    """The base logger: W&B offline by default (online once the user logs in and sets WANDB_MODE)."""
    return {
        "class_path": WANDB_LOGGER,
        "init_args": {
            "project": "egakit",
            "save_dir": DEFAULT_LOG_DIR,
            "offline": os.environ.get("WANDB_MODE", "offline") == "offline",
            "log_model": False,
        },
    }


def run_lightning_cli(args: Sequence[str]) -> Any:
    """Run LightningCLI on ``args`` (e.g. ``["fit", "-c", "configs/v1/pretrain.yaml"]``)."""
    cli_class = _make_cli_class()
    return cli_class(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"logger": default_trainer_logger()},
        parser_kwargs={"prog": "ega"},
        args=list(args),
    )


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
                        help="demo: the preset's demo budget (configs/demo/<preset>.yaml, default); "
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
