"""The `ega` command (also `python -m egakit`, and `lightning` as an alias).

    ega fit|validate|test|predict -c configs/...yaml   LightningCLI: any LightningModule and
                                                      LightningDataModule named in the config
    ega world --preset tiny|small|city --out DIR      make a synthetic LBS world
    ega allocate --ckpt CKPT --world DIR --request F  one request -> winners and payments (JSON)
    ega evaluate -c configs/eval/v1.yaml              the V1 Tables 1-3 on truth and evaluator
    ega perf all --device cpu                         the performance suite (= python -m egakit.perf)
    ega demo [--runs DIR]                             the README's main job on the small world
    ega --version                                     egakit, torch and lightning versions

W&B runs offline unless the user has set ``WANDB_MODE``; when wandb cannot be imported the
configured WandbLogger is replaced by a CSVLogger in the same directory. A W&B run is named after
its config (``pretrain``), grouped by the config's folder (``v1-tiny``) and typed by the command
(``job_type`` fit/validate/test/predict); it holds the resolved config, the last validation
metrics and, after ``fit``, the checkpoints (with their MODEL_CARD.md) as a model artifact
(:mod:`egakit.callbacks`, :mod:`egakit.tracking`).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
#: Model constructor arguments filled from the world's world.json when a config leaves them unset.
WORLD_LINKED_ARGS = {"vocab_sizes": "vocab", "num_slots": "K"}
DEFAULT_LOG_DIR = "runs"
#: Program name when the command is run in a way that names no script (``python -m egakit``).
DEFAULT_PROG = "ega"
#: Script names under which the CLI presents itself (``lightning`` is an alias of ``ega``).
PROG_NAMES = ("ega", "lightning")
#: Packages whose versions ``ega --version`` prints.
VERSION_PACKAGES = ("egakit", "torch", "lightning")

USAGE = """usage: ega <command> [options]

Training and inference (LightningCLI; `lightning <command>` is the same program):
  fit        train a model:                ega fit -c configs/v1/pretrain.yaml
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

  --version  egakit, torch and lightning versions
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


def name_wandb_run(config: Any, subcommand: str) -> None:
    """Give a configured WandbLogger the run's name, group and job_type (:func:`egakit.tracking.run_identity`)
    where the config leaves them unset: name = config stem, group = config folder, job_type = subcommand."""
    from egakit.tracking import run_identity

    trainer = config.get("trainer")
    logger = getattr(trainer, "logger", None) if trainer is not None else None
    loggers = logger if isinstance(logger, list) else [logger]
    config_paths = config.get("config") or []
    config_path = str(config_paths[0]) if config_paths else None  # the main config; later ones override
    model_class = getattr(config.get("model"), "class_path", "") or ""
    identity = run_identity(subcommand, config_path, default_name=model_class.rpartition(".")[2] or "run")
    for entry in loggers:
        if getattr(entry, "class_path", None) != WANDB_LOGGER:
            continue
        if getattr(entry.init_args, "name", None) is None:
            entry.init_args.name = identity["name"]
        kwargs = dict(getattr(entry, "dict_kwargs", None) or {})
        kwargs.setdefault("group", identity["group"])
        kwargs.setdefault("job_type", identity["job_type"])
        entry.dict_kwargs = kwargs


def _lightning_run_callbacks(subcommand: str, trainer: Any) -> list:
    """Callbacks every ``ega`` run gets: model card and checkpoint artifact after ``fit``, a
    JSON-lines writer for ``predict`` unless the config has a prediction writer."""
    from lightning.pytorch.callbacks import BasePredictionWriter

    from egakit.callbacks import CheckpointArtifacts, JsonLinesPredictionWriter, ModelCardWriter

    if subcommand == "fit":
        return [ModelCardWriter(), CheckpointArtifacts()]  # the card first: the artifact carries it
    writers = (BasePredictionWriter, JsonLinesPredictionWriter)
    if subcommand == "predict" and not any(isinstance(cb, writers) for cb in trainer.callbacks):
        return [JsonLinesPredictionWriter()]
    return []


def _make_cli_class() -> type:
    from lightning.pytorch.cli import LightningCLI

    class EGACLI(LightningCLI):
        """LightningCLI that links models to the world they train on and tracks each run."""

        def instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            inject_world_sizes(config)
            fall_back_to_csv_logger(config)
            if self.subcommand:
                name_wandb_run(config, self.subcommand)
            super().instantiate_classes()

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            trainer = super().instantiate_trainer(**kwargs)
            trainer.callbacks.extend(_lightning_run_callbacks(str(self.subcommand), trainer))
            return trainer

    return EGACLI


def default_trainer_logger() -> dict:
    """The base logger: W&B offline by default (online once the user logs in and sets WANDB_MODE).
    ``log_model`` stays off: WandbLogger refuses it offline, and
    :class:`egakit.callbacks.CheckpointArtifacts` logs the checkpoints in both modes."""
    from egakit.tracking import WANDB_PROJECT, wandb_offline

    return {
        "class_path": WANDB_LOGGER,
        "init_args": {
            "project": WANDB_PROJECT,
            "save_dir": DEFAULT_LOG_DIR,
            "offline": wandb_offline(),
            "log_model": False,
        },
    }


def invoked_prog(argv0: Optional[str] = None) -> str:
    """The name the user typed: ``ega`` or ``lightning`` (the alias); ``ega`` otherwise
    (``python -m egakit``, tests)."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name
    return name if name in PROG_NAMES else DEFAULT_PROG


class _DropLitLoggerTip(logging.Filter):
    """Drops Lightning's advertisement for LitLogger (an INFO line on every run, not a warning
    about this run); every other Lightning message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_known_warnings() -> None:
    """Silence the warnings of a ``fit`` that are not about the user's run, each at its narrowest
    (message + module) with the reason; everything else still prints."""
    # torchdata's StatefulDataLoader (our RequestLoader's base) calls torch.set_vital, deprecated
    # by torch 2.13; nothing to change on our side until torchdata stops calling it.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning,
                            module=r"torchdata\.stateful_dataloader")
    # Lightning 2.6's own pytree helper uses LeafSpec, deprecated by torch 2.13 (Lightning's code).
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            module=r"lightning\.pytorch\.utilities\._pytree")
    # RequestStream's __len__ is exact under any num_workers: it shards requests into
    # world_size * num_workers contiguous equal shards (egakit.data.request_stream), which is what
    # this generic warning asks for.
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined",
                            module=r"lightning\.pytorch\.utilities\.data")
    # Each phase freezes the modules it does not train and keeps them in eval mode on purpose
    # (Dice running statistics must not move; docs/design.md §5, egakit.lit.base.EGAV1Module.train).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training",
                            module=r"lightning\.pytorch\.loops\.fit_loop")
    tip_filter = _DropLitLoggerTip()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # rank_zero_info's logger
    if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
        logger.addFilter(tip_filter)


def run_lightning_cli(args: Sequence[str], prog: Optional[str] = None) -> Any:
    """Run LightningCLI on ``args`` (e.g. ``["fit", "-c", "configs/v1/pretrain.yaml"]``).

    ``args`` are always the command line to parse; ``sys.argv`` is not read, and it is set to the
    program name alone while LightningCLI parses (LightningCLI warns when both are given: ``ega``
    itself passes ``sys.argv[1:]`` here).
    """
    from egakit.callbacks import RunConfigSaver

    quiet_known_warnings()
    cli_class = _make_cli_class()
    prog = invoked_prog() if prog is None else prog
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else prog]
    try:
        cli = cli_class(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"logger": default_trainer_logger()},
            parser_kwargs={"prog": prog},
            args=list(args),
        )
    finally:
        sys.argv = saved_argv
    finish_wandb_run(getattr(cli, "trainer", None))
    return cli


def finish_wandb_run(trainer: Any) -> None:
    """Close the trainer's W&B run: one ``ega`` command is one run, complete on disk (summary,
    artifacts) when the command returns, also when it was called from Python."""
    from egakit.tracking import wandb_logger_of

    logger = wandb_logger_of(trainer) if trainer is not None else None
    if logger is not None and getattr(logger, "_experiment", None) is not None:
        logger.experiment.finish()


def version_text() -> str:
    """``egakit X, torch Y, lightning Z`` (``not installed`` for a missing one)."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in VERSION_PACKAGES:
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


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
        print(USAGE.replace("usage: ega", f"usage: {invoked_prog()}", 1))
        return 0
    if argv[0] == "--version":
        print(version_text())
        return 0
    command = argv[0]
    if command in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[command](argv[1:])
    if command in LIGHTNING_SUBCOMMANDS or command.startswith("-"):
        run_lightning_cli(argv)
        return 0
    print(f"ega: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
