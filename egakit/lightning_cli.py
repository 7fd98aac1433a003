"""The LightningCLI behind ``ega fit|validate|test|predict`` (and its ``lightning`` alias).

:class:`EGACLI` is LightningCLI plus what egakit's runs need:

- the model's world-dependent sizes (vocabularies, K, cross-feature vocabularies) filled from the
  world's world.json (:func:`inject_world_sizes`);
- W&B offline by default, a CSV logger when wandb cannot be imported;
- guarded ``--ckpt_path``: remote checkpoints are refused, local ones are read with
  ``weights_only=True`` first and refused with the reason when they belong to another phase,
  stage, model configuration or vocabulary (a resumed run would otherwise swap the model and
  overwrite the run's checkpoints); ``--ckpt_path last`` with nothing to resume is an error unless
  ``--allow_fresh_start true``;
- a resumable checkpoint saved on SIGINT / SIGTERM (:class:`~egakit.lit.interrupt.SaveOnInterrupt`),
  and checkpoint files written through a temporary file in their own directory.

The class lives at module level so that ``--trainer.strategy ddp_spawn`` can pickle it.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning.pytorch.cli import LightningCLI

from egakit.checkpoint import CheckpointError, checkpoint_metadata, read_checkpoint, resume_problems

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
#: Model constructor arguments filled from the world's world.json when a config leaves them unset.
WORLD_LINKED_ARGS = {"vocab_sizes": "vocab", "num_slots": "K"}
DEFAULT_LOG_DIR = "runs"
#: URL schemes a checkpoint path may not use: Lightning reads remote files with weights_only=False.
REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "gcs://", "az://", "abfs://", "hf://", "ftp://")
RESUME_LAST = "last"

# Lightning 2.6's pytree helper uses an API torch 2.13 deprecates (its isinstance check on
# LeafSpec): a warning per fit that only a Lightning release can act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def _import_object(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _wandb_available() -> bool:
    try:
        import wandb  # noqa: F401
    except Exception:  # an install broken in any way counts as unavailable
        return False
    return True


def _get(section: Any, key: str) -> Any:
    """``section[key]`` for a dict or a jsonargparse Namespace; None when absent."""
    if section is None:
        return None
    if isinstance(section, dict):
        return section.get(key)
    return getattr(section, key, None)


def _world_dir(config: Any) -> Optional[str]:
    return _get(_get(config.get("data"), "init_args"), "world_dir")


def _world_meta_for(config: Any) -> Optional[dict]:
    """world.json of the world the data config points at (validated), or None when the config
    names no world. A named world that is missing is an error that says how to make it."""
    world_dir = _world_dir(config)
    if not world_dir:
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


def _checkpoint_dirs(trainer: Any) -> list[Path]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    return [Path(cb.dirpath) for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]


def check_ckpt_path(ckpt_path: Optional[str], model: Any, trainer: Any, *, allow_fresh_start: bool) -> Optional[str]:
    """The checkpoint path a subcommand may resume from, or a :class:`CheckpointError` saying why
    not (see the module docstring). ``"last"`` is resolved to the run's own ``last.ckpt``."""
    if ckpt_path is None:
        return None
    text = str(ckpt_path)
    if text.lower().startswith(REMOTE_PREFIXES) or "://" in text:
        raise CheckpointError(text, "remote checkpoints are not loaded (they could run code): download it, "
                                    "check where it comes from, and pass the local file")
    if text == RESUME_LAST:
        found = [d / "last.ckpt" for d in _checkpoint_dirs(trainer) if (d / "last.ckpt").is_file()]
        if not found:
            if allow_fresh_start:
                return None
            dirs = ", ".join(str(d) for d in _checkpoint_dirs(trainer)) or "no checkpoint directory configured"
            raise CheckpointError(RESUME_LAST, f"nothing to resume in {dirs}; pass --allow_fresh_start true "
                                               "to start from scratch when there is no last.ckpt")
        text = str(found[0])
    if text in ("best", "hpc", "registry"):
        return text
    ckpt = read_checkpoint(text)
    identity = getattr(model, "checkpoint_identity", None)
    if callable(identity):
        problems = resume_problems(checkpoint_metadata(ckpt, text), identity())
        if problems:
            raise CheckpointError(text, "cannot resume this run from it: " + "; ".join(problems))
    return text


class EGACLI(LightningCLI):
    """LightningCLI that links models to the world they train on and guards ``--ckpt_path``."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--allow_fresh_start", type=bool, default=False,
            help="with --ckpt_path last: start from scratch when the run has no last.ckpt (default: an error)",
        )

    def _parse_ckpt_path(self) -> None:
        """LightningCLI would rebuild the model from the checkpoint's hyper-parameters here,
        silently swapping the configured model for whatever the checkpoint holds. egakit keeps the
        configured run and checks the checkpoint against it instead (:func:`check_ckpt_path`)."""

    def instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        inject_world_sizes(config)
        fall_back_to_csv_logger(config)
        super().instantiate_classes()
        from egakit.lit.interrupt import install_checkpoint_safety

        install_checkpoint_safety(self.trainer)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "ckpt_path" in kwargs:
            allow = bool(self.config[subcommand].get("allow_fresh_start", False))
            kwargs["ckpt_path"] = check_ckpt_path(kwargs["ckpt_path"], self.model, self.trainer, allow_fresh_start=allow)
            if "weights_only" in kwargs:
                kwargs["weights_only"] = True
        return kwargs


def run_lightning_cli(args: Sequence[str], prog: str = "ega") -> Any:
    """Run LightningCLI on ``args`` (e.g. ``["fit", "-c", "configs/v1/pretrain.yaml"]``).

    The arguments reach LightningCLI as the process's command line (``sys.argv`` for the call),
    the one way it reads them without warning that both were given."""
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        return EGACLI(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"logger": default_trainer_logger()},
            parser_kwargs={"prog": prog},
        )
    finally:
        sys.argv = saved
