"""Lightning callbacks the ``ega`` CLI adds to every run (application layer).

* :class:`RunConfigSaver` - LightningCLI's config callback: the resolved config goes into the
  run's own directory (:func:`egakit.tracking.run_directory`, not one shared ``runs/config.yaml``)
  and, under ``config``, into the W&B run config (model, data, trainer, seed_everything).
* :class:`ModelCardWriter` - ``MODEL_CARD.md`` next to each exported checkpoint at the end of fit.
* :class:`CheckpointArtifacts` - the kept checkpoints (and their model card) as one
  ``wandb.Artifact(type="model")``; offline runs keep it for ``wandb sync``
  (``WandbLogger(offline=True, log_model=True)`` refuses, so this callback logs it itself).
* :class:`JsonLinesPredictionWriter` - ``ega predict`` output, one JSON object per request.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import SaveConfigCallback

from egakit.model_card import MODEL_CARD_FILENAME, VALIDATION_PREFIX, ModelCardData, model_card_markdown, world_summary
from egakit.provenance import commit_label
from egakit.tracking import (
    CONFIG_FILENAME,
    WANDB_CONFIG_FILENAME,
    WANDB_CONFIG_KEY,
    artifact_name,
    checkpoint_dirs,
    kept_checkpoints,
    run_directory,
    wandb_logger_of,
)

#: Default ``ega predict`` output (a config may set the writer's ``output`` instead).
DEFAULT_PREDICTIONS = "runs/predictions/predictions.jsonl"


class RunConfigSaver(SaveConfigCallback):
    """Writes the resolved config into the run's own directory and the W&B run config."""

    def __init__(self, parser: Any, config: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False  # trainer.log_dir is W&B's save_dir, shared by every run
        super().__init__(parser, config, **kwargs)
        #: Where the config was written (set at setup on rank zero).
        self.saved_to: Optional[Path] = None

    def resolved_config(self) -> dict[str, Any]:
        """The config as plain YAML data (what ``--print_config`` prints), without ``config`` (the
        paths of the YAML files it came from)."""
        data = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        return {key: value for key, value in data.items() if key != "config"}

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        wandb_logger = wandb_logger_of(trainer)
        run_dir = run_directory(trainer)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / (WANDB_CONFIG_FILENAME if wandb_logger is not None else CONFIG_FILENAME)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        self.saved_to = path
        if wandb_logger is not None:
            wandb_logger.experiment.config.update({WANDB_CONFIG_KEY: self.resolved_config()}, allow_val_change=True)


def last_validation_metrics(trainer: Any) -> dict[str, float]:
    """Scalar ``val/...`` metrics of the last validation loop."""
    metrics = {}
    for name, value in trainer.callback_metrics.items():
        if name.startswith(VALIDATION_PREFIX) and torch.as_tensor(value).numel() == 1:
            metrics[name] = float(value)
    return metrics


def training_summary(trainer: Any, pl_module: Any) -> dict[str, Any]:
    """Budget, optimiser and model settings of the fit, for the model card."""
    dm = getattr(trainer, "datamodule", None)
    hparams = dict(getattr(pl_module, "hparams", {}))
    summary: dict[str, Any] = {
        "max_steps": trainer.max_steps,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "batch_size": getattr(dm, "batch_size", None),
        "precision": str(trainer.precision),
        "devices": trainer.num_devices,
        "seed": os.environ.get("PL_GLOBAL_SEED"),  # set by seed_everything (LightningCLI's seed_everything)
    }
    for key in ("lr", "init_from", "lr_schedule", "model"):
        if key in hparams:
            summary[key] = hparams[key]
    return summary


class ModelCardWriter(Callback):
    """At the end of ``fit``, writes MODEL_CARD.md into every ModelCheckpoint folder that holds a
    checkpoint (rank zero only). Metrics are the last validation's ``val/*``."""

    def __init__(self) -> None:
        #: The cards written (set at fit end).
        self.written: list[Path] = []

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        files = kept_checkpoints(trainer)
        if not files:
            return
        dm = getattr(trainer, "datamodule", None)
        world_dir = getattr(dm, "world_dir", None)
        data = ModelCardData(
            model_class=f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
            phase=getattr(pl_module, "phase", None),
            checkpoints=[p.name for p in files],
            world_dir=None if world_dir is None else str(world_dir),
            world=world_summary(world_dir),
            metrics=last_validation_metrics(trainer),
            training=training_summary(trainer, pl_module),
            git_commit=commit_label(),
        )
        text = model_card_markdown(data)
        for folder in checkpoint_dirs(trainer):
            if any(p.parent == folder for p in files):
                (folder / MODEL_CARD_FILENAME).write_text(text)
                self.written.append(folder / MODEL_CARD_FILENAME)


class CheckpointArtifacts(Callback):
    """At the end of ``fit``, logs the kept checkpoints (and the model card beside them) to the
    W&B run as one ``wandb.Artifact(type="model")`` named ``<run name>-model``, alias ``latest``
    (and ``best`` when a ModelCheckpoint monitors a metric). Does nothing without a WandbLogger.
    Put it after :class:`ModelCardWriter` so that the card is in the artifact."""

    def __init__(self, extra_files: Sequence[str] = (MODEL_CARD_FILENAME,)) -> None:
        self.extra_files = tuple(extra_files)
        #: The logged artifact (set at fit end on rank zero).
        self.artifact: Any = None

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        wandb_logger = wandb_logger_of(trainer)
        if wandb_logger is None or not trainer.is_global_zero:
            return
        files = kept_checkpoints(trainer)
        if not files:
            return
        import wandb

        run = wandb_logger.experiment
        artifact = wandb.Artifact(
            artifact_name(run.name or type(pl_module).__name__),
            type="model",
            description=f"{type(pl_module).__name__} checkpoints of run {run.name}",
            metadata={"phase": getattr(pl_module, "phase", None), "global_step": trainer.global_step,
                      "files": [p.name for p in files], "val_metrics": last_validation_metrics(trainer)},
        )
        for path in files:
            artifact.add_file(str(path), name=path.name)
        for folder in sorted({p.parent for p in files}):
            for extra in self.extra_files:
                if (folder / extra).is_file():
                    artifact.add_file(str(folder / extra), name=extra)
        aliases = ["latest"]
        if any(getattr(cb, "monitor", None) and getattr(cb, "best_model_path", "") for cb in trainer.callbacks):
            aliases.append("best")
        run.log_artifact(artifact, aliases=aliases)
        self.artifact = artifact


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


class JsonLinesPredictionWriter(Callback):
    """Writes ``predict_step`` outputs as JSON lines: one object per request.

    A ``predict_step`` returns a dict of per-request lists/tensors with a leading batch axis
    (``request_id`` (B,), ``winners`` (B, K), ...); each request becomes
    ``{"request_id": ..., "winners": [...], ...}``. The file is rewritten at every predict run.

    Args:
        output: the ``.jsonl`` file (its folder is created).
    """

    def __init__(self, output: str = DEFAULT_PREDICTIONS) -> None:
        # A plain Callback, not a BasePredictionWriter: that one asks the loader for sample indices,
        # which a streaming RequestLoader has none of (Lightning warns), and the rows carry request_id.
        self.output = Path(output)
        self.lines_written = 0
        self._handle: Any = None

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.world_size > 1:
            raise RuntimeError("JsonLinesPredictionWriter writes one file: run `ega predict` on one device")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.output.open("w")
        self.lines_written = 0

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        if not isinstance(prediction, dict) or "request_id" not in prediction:
            raise TypeError(f"{type(pl_module).__name__}.predict_step must return a dict with 'request_id' "
                            f"and per-request values, got {type(prediction).__name__}")
        columns = {key: _jsonable(value) for key, value in prediction.items()}
        for row in range(len(columns["request_id"])):
            self._handle.write(json.dumps({key: value[row] for key, value in columns.items()}) + "\n")
            self.lines_written += 1

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            print(f"ega predict: {self.lines_written} predictions written to {self.output}")


__all__ = ["CheckpointArtifacts", "DEFAULT_PREDICTIONS", "JsonLinesPredictionWriter", "ModelCardWriter",
           "RunConfigSaver", "last_validation_metrics", "training_summary"]
