"""The LightningCLI behind ``ega fit|validate|test|predict`` (and its ``lightning`` alias).

:class:`EGACLI` is LightningCLI plus what egakit's runs need:

- **sizes linked from the world**: the model's ``vocab_sizes``, ``num_slots`` (K) and
  ``cross_vocab_sizes`` come from the instantiated DataModule (its world's world.json) through
  ``parser.link_arguments(..., apply_on="instantiate")``; a config never writes them.
- **run directories**: every run has a name (``run_name``, plus ``run_variant`` when an ablation
  file sets one) and lives in ``<runs_dir>/<run_name>[-<run_variant>]``. The configs write
  ``{run_dir}`` in their paths (checkpoint ``dirpath``, ``init_from``, teacher checkpoints) and
  the CLI replaces it before anything is built, so ``--run_name scratch`` moves a test run's
  checkpoints, logs and saved config away from every other run's, and the next phase reads the
  run it continues.
- **configs by name**: ``-c configs/v1/pretrain.yaml`` reads the local file when it exists and
  the copy packaged with egakit otherwise (:mod:`egakit.config_files`).
- **guarded** ``--ckpt_path``: remote checkpoints are refused, local ones are read with
  ``weights_only=True`` first and refused with the reason when they belong to another phase,
  stage, model configuration or vocabulary (LightningCLI would otherwise rebuild the model from
  the checkpoint, swapping the run's model and overwriting its checkpoints); ``--ckpt_path last``
  with nothing to resume is an error unless ``--allow_fresh_start true``;
- **interrupts lose nothing**: SIGINT / SIGTERM save a resumable ``last.ckpt`` and checkpoint
  files are written through a temporary file in their own directory
  (:mod:`egakit.lit.interrupt`);
- W&B offline by default, a CSV logger when wandb cannot be imported.

The class lives at module level so that ``--trainer.strategy ddp_spawn`` can pickle it.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from egakit.checkpoint import CheckpointError, check_finite, checkpoint_metadata, read_checkpoint, resume_problems
from egakit.config_files import resolve_config_args
from egakit.warning_filters import quiet_known_warnings

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
#: The placeholder a config writes for the run's directory (``<runs_dir>/<run name>``).
RUN_DIR = "{run_dir}"
DEFAULT_RUNS_DIR = "runs"
#: The run name of a config that names none.
DEFAULT_RUN_NAME = "default"
#: A checkpoint path that names a file by URL is refused: Lightning reads those with weights_only=False.
URL_MARKER = "://"
RESUME_LAST = "last"
#: ``--ckpt_path`` values Lightning resolves itself, other than ``last``.
LIGHTNING_CKPT_NAMES = ("best", "hpc", "registry")



def _wandb_available() -> bool:
    try:
        import wandb  # noqa: F401
    except Exception:  # an install broken in any way counts as unavailable
        return False
    return True


def world_vocab_sizes(data: Any) -> dict[str, int]:
    """Embedding-table sizes of the world's categorical features (world.json ``vocab``) of an
    instantiated DataModule: the source of the model's ``vocab_sizes`` link."""
    return {str(name): int(size) for name, size in data.meta["vocab"].items()}


def run_dir_of(config: Any) -> Path:
    """``<runs_dir>/<run_name>[-<run_variant>]`` of a parsed config."""
    name = config.get("run_name") or DEFAULT_RUN_NAME
    variant = config.get("run_variant")
    return Path(config.get("runs_dir") or DEFAULT_RUNS_DIR) / (f"{name}-{variant}" if variant else name)


def expand_run_dir(value: Any, run_dir: Path) -> Any:
    """``value`` (a parsed config, a Namespace, list or string) with ``{run_dir}`` replaced by
    ``run_dir`` in every string, in place for Namespaces and lists; returns the new value."""
    if isinstance(value, str):
        return value.replace(RUN_DIR, str(run_dir)) if RUN_DIR in value else value
    if isinstance(value, list):
        value[:] = [expand_run_dir(item, run_dir) for item in value]
        return value
    if isinstance(value, dict):
        for key in list(value):
            value[key] = expand_run_dir(value[key], run_dir)
        return value
    if isinstance(value, Namespace):
        for key, item in vars(value).items():
            setattr(value, key, expand_run_dir(item, run_dir))
    return value


def check_checkpoint_cadence(config: Any) -> None:
    """Refuse a ModelCheckpoint that saves every N training steps when ``trainer.max_steps`` is
    above N and not a multiple of it: Lightning would then keep the ``last.ckpt`` of step
    ``N·floor(max_steps/N)`` and the next phase would start from a model short of its last steps."""
    trainer = config.get("trainer")
    max_steps = getattr(trainer, "max_steps", None) if trainer is not None else None
    if not max_steps or max_steps < 0:
        return
    for callback in getattr(trainer, "callbacks", None) or []:
        if not str(getattr(callback, "class_path", "")).endswith("ModelCheckpoint"):
            continue
        every = getattr(callback.init_args, "every_n_train_steps", None) or 0
        if every > 1 and max_steps > every and max_steps % every:
            raise ValueError(
                f"trainer.max_steps={max_steps} is not a multiple of the checkpoint's every_n_train_steps={every}: "
                f"last.ckpt would miss the last {max_steps % every} steps. Pass a multiple of {every}, or "
                f"--trainer.callbacks.init_args.every_n_train_steps=<a divisor of {max_steps}>"
            )


def fall_back_to_csv_logger(config: Any) -> None:
    """Swap a configured WandbLogger for a CSVLogger when wandb cannot be imported."""
    trainer = config.get("trainer")
    logger = getattr(trainer, "logger", None) if trainer is not None else None
    loggers = logger if isinstance(logger, list) else [logger]
    for entry in loggers:
        if getattr(entry, "class_path", None) == WANDB_LOGGER and not _wandb_available():
            save_dir = getattr(entry.init_args, "save_dir", None) or DEFAULT_RUNS_DIR
            print(f"wandb is not available: logging to CSV under {save_dir}", file=sys.stderr)
            entry.class_path = CSV_LOGGER
            entry.init_args = type(entry.init_args)(save_dir=save_dir, name="egakit")


def default_trainer_logger() -> dict:
    """The base logger: W&B offline by default (online once the user logs in and sets
    WANDB_MODE), writing into the run's directory. ``log_model`` stays off: WandbLogger refuses it
    offline, and :class:`egakit.callbacks.CheckpointArtifacts` logs the checkpoints in both modes."""
    from egakit.tracking import WANDB_PROJECT, wandb_offline

    return {
        "class_path": WANDB_LOGGER,
        "init_args": {
            "project": WANDB_PROJECT,
            "save_dir": RUN_DIR,
            "offline": wandb_offline(),
            "log_model": False,
        },
    }


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


def finish_wandb_run(trainer: Any) -> None:
    """Close the trainer's W&B run: one ``ega`` command is one run, complete on disk (summary,
    artifacts) when the command returns, also when it was called from Python."""
    from egakit.tracking import wandb_logger_of

    logger = wandb_logger_of(trainer) if trainer is not None else None
    if logger is not None and getattr(logger, "_experiment", None) is not None:
        logger.experiment.finish()


def _checkpoint_dirs(trainer: Any) -> list[Path]:
    return [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]


def check_ckpt_path(ckpt_path: Optional[str], model: Any, trainer: Any, *, allow_fresh_start: bool) -> Optional[str]:
    """The checkpoint a subcommand may start from, or a :class:`CheckpointError` saying why not
    (module docstring). ``"last"`` is resolved to the run's own ``last.ckpt``; a module with a
    ``checkpoint_identity()`` (every egakit LightningModule) must match the checkpoint's."""
    if ckpt_path is None:
        return None
    text = str(ckpt_path)
    if URL_MARKER in text:
        raise CheckpointError(text, "remote checkpoints are not loaded (unpickling one can run code): download "
                                    "it, check where it comes from, and pass the local file")
    if text == RESUME_LAST:
        found = [d / "last.ckpt" for d in _checkpoint_dirs(trainer) if (d / "last.ckpt").is_file()]
        if not found:
            if allow_fresh_start:
                return None
            dirs = ", ".join(str(d) for d in _checkpoint_dirs(trainer)) or "no checkpoint directory configured"
            raise CheckpointError(RESUME_LAST, f"nothing to resume in {dirs}; pass --allow_fresh_start true "
                                               "to start from scratch when there is no last.ckpt")
        text = str(found[0])
    if text in LIGHTNING_CKPT_NAMES:
        return text
    ckpt = read_checkpoint(text)
    check_finite(ckpt, text)
    identity = getattr(model, "checkpoint_identity", None)
    if callable(identity):
        problems = resume_problems(checkpoint_metadata(ckpt, text), identity())
        if problems:
            raise CheckpointError(text, "does not belong to this run: " + "; ".join(problems))
    return text


class EGACLI(LightningCLI):
    """LightningCLI that links models to the world they train on and puts each run in its own
    directory (see the module docstring)."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--run_name", type=Optional[str], default=None,
                            help=f"the run's name: it lives in <runs_dir>/<run_name> (default: the config's, "
                                 f"else {DEFAULT_RUN_NAME!r})")
        parser.add_argument("--run_variant", type=Optional[str], default=None,
                            help="a variant of the run (set by the ablation files): the run lives in "
                                 "<runs_dir>/<run_name>-<run_variant>")
        parser.add_argument("--runs_dir", type=str, default=DEFAULT_RUNS_DIR,
                            help="the folder that holds every run (default: runs)")
        parser.add_argument("--allow_fresh_start", type=bool, default=False,
                            help="with --ckpt_path last: start from scratch when the run has no last.ckpt "
                                 "(default: an error)")
        # The sizes the model takes from the world: read from the DataModule once it is built.
        parser.link_arguments("data", "model.init_args.vocab_sizes", compute_fn=world_vocab_sizes,
                              apply_on="instantiate")
        parser.link_arguments("data.num_slots", "model.init_args.num_slots", apply_on="instantiate")
        parser.link_arguments("data.cross_vocab_sizes", "model.init_args.cross_vocab_sizes", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        expand_run_dir(config, run_dir_of(config))  # every path of the run, --ckpt_path included
        check_checkpoint_cadence(config)
        fall_back_to_csv_logger(config)
        if self.subcommand:
            name_wandb_run(config, self.subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.extend(_lightning_run_callbacks(str(self.subcommand), trainer))
        return trainer

    def _parse_ckpt_path(self) -> None:
        """LightningCLI would rebuild the model from the checkpoint's hyper-parameters here,
        silently swapping the configured model for whatever the checkpoint holds. egakit keeps the
        configured run and checks the checkpoint against it instead (:func:`check_ckpt_path`)."""

    def after_instantiate_classes(self) -> None:
        from egakit.lit.interrupt import install_checkpoint_safety

        install_checkpoint_safety(self.trainer)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "ckpt_path" in kwargs:
            allow = bool(self.config[subcommand].get("allow_fresh_start", False))
            kwargs["ckpt_path"] = check_ckpt_path(kwargs["ckpt_path"], self.model, self.trainer, allow_fresh_start=allow)
            if kwargs["ckpt_path"] is not None:
                kwargs["weights_only"] = True
        return kwargs


def run_lightning_cli(args: Sequence[str], prog: str = "ega") -> Any:
    """Run LightningCLI on ``args`` (e.g. ``["fit", "-c", "configs/v1/pretrain.yaml"]``); each
    ``-c``/``--config`` file is found locally or among egakit's packaged configs.

    The arguments reach LightningCLI as the process's command line (``sys.argv`` for the call),
    the one way it reads them without warning that both were given."""
    from egakit.callbacks import RunConfigSaver

    quiet_known_warnings()
    saved = sys.argv
    sys.argv = [prog, *resolve_config_args(args)]
    try:
        cli = EGACLI(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"logger": default_trainer_logger(), "default_root_dir": RUN_DIR},
            parser_kwargs={"prog": prog},
        )
    finally:
        sys.argv = saved
    finish_wandb_run(getattr(cli, "trainer", None))
    return cli
