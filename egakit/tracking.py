"""Experiment tracking for the ``ega`` commands: W&B run identity, the resolved config in each
run's own directory and W&B config, checkpoints as W&B model artifacts.

W&B runs offline unless the user set ``WANDB_MODE`` (``wandb sync runs/wandb/offline-run-*``
uploads a run later, artifacts included). Every function here works without wandb installed as
long as no W&B logger is in use.

* :func:`run_identity` - name (the config's stem, e.g. ``pretrain``), group (the experiment: the
  config's folder, e.g. ``v1-tiny``) and ``job_type`` (the command: fit, validate, test, predict,
  evaluate, perf) of a run.
* :func:`run_directory`, :func:`kept_checkpoints` - where a trainer's run and checkpoints are
  (the Lightning callbacks using them live in :mod:`egakit.callbacks`).
* :func:`offline_run` - a plain ``wandb.init`` for the jobs outside Lightning (evaluate, perf).
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

#: W&B project of every egakit run.
WANDB_PROJECT = "egakit"
#: Where runs (W&B, CSV, configs) go unless a config says otherwise.
DEFAULT_LOG_DIR = "runs"
#: The resolved LightningCLI config, in each run's directory.
CONFIG_FILENAME = "config.yaml"
#: The same config inside a W&B run's files (W&B keeps its own config.yaml there).
WANDB_CONFIG_FILENAME = "lightning_config.yaml"
#: Key of the resolved config in the W&B run config (Lightning logs the module's init args at the
#: top level, where ``model`` would clash with the config's ``model`` section).
WANDB_CONFIG_KEY = "config"
#: Characters W&B accepts in an artifact name.
_ARTIFACT_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def wandb_mode_default() -> None:
    """W&B offline unless the user chose a mode (``WANDB_MODE=online`` after ``wandb login``)."""
    os.environ.setdefault("WANDB_MODE", "offline")


def wandb_offline() -> bool:
    return os.environ.get("WANDB_MODE", "offline") in ("offline", "dryrun")


def run_identity(job_type: str, config_path: Optional[str | Path] = None, default_name: str = "run") -> dict[str, str]:
    """``{"name", "group", "job_type"}`` of a run.

    ``configs/v1/tiny/pretrain.yaml`` gives name ``pretrain`` and group ``v1-tiny`` (the folders
    under ``configs/``, or the config's parent folder name elsewhere); no config gives
    ``default_name`` and group ``default``.
    """
    if config_path is None:
        return {"name": default_name, "group": "default", "job_type": job_type}
    path = Path(str(config_path))
    parts = path.resolve().parent.parts
    if "configs" in parts:
        group_parts = parts[len(parts) - parts[::-1].index("configs"):]
    else:
        group_parts = parts[-1:]
    group = "-".join(group_parts) or "default"
    return {"name": path.stem, "group": group, "job_type": job_type}


def artifact_name(run_name: str, suffix: str = "model") -> str:
    """A W&B artifact name for a run: ``<run_name>-<suffix>`` with W&B's allowed characters."""
    return _ARTIFACT_NAME_BAD.sub("-", f"{run_name}-{suffix}").strip("-")


def wandb_logger_of(trainer: Any) -> Any:
    """The trainer's WandbLogger, or None."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - lightning is what calls us
        return None
    for logger in getattr(trainer, "loggers", ()):
        if isinstance(logger, WandbLogger):
            return logger
    return None


def checkpoint_dirs(trainer: Any) -> list[Path]:
    """The ``dirpath`` of every ModelCheckpoint of ``trainer`` (in callback order, no repeats)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    dirs: list[Path] = []
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath and Path(callback.dirpath) not in dirs:
            dirs.append(Path(callback.dirpath))
    return dirs


def kept_checkpoints(trainer: Any) -> list[Path]:
    """Checkpoint files the trainer's ModelCheckpoints kept (last and best), existing, no repeats."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    files: list[Path] = []
    for callback in trainer.callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        for path in (callback.last_model_path, callback.best_model_path, *callback.best_k_models):
            if path and Path(path).is_file() and Path(path) not in files:
                files.append(Path(path))
    return files


def run_directory(trainer: Any) -> Path:
    """The directory of the trainer's run: the W&B run's files, a CSV/TensorBoard logger's
    version folder, else the first checkpoint folder, else ``default_root_dir``."""
    wandb_logger = wandb_logger_of(trainer)
    if wandb_logger is not None:
        return Path(wandb_logger.experiment.dir)
    for logger in getattr(trainer, "loggers", ()):
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return Path(log_dir)
    dirs = checkpoint_dirs(trainer)
    return dirs[0] if dirs else Path(trainer.default_root_dir)


# ----------------------------------------------------------------------------------------------
# Reading an offline run back (what `wandb sync` would upload)

#: The transaction log (``run-<id>.wandb``) is a LevelDB-style log: a 7-byte file header
#: (``:W&B``, magic, version), then 32 KiB blocks of records, each ``<checksum u32, length u16,
#: type u8>`` + data; a record split across blocks is FIRST, MIDDLE..., LAST.
_LOG_FILE_HEADER = 7
_LOG_RECORD_HEADER = 7
_LOG_BLOCK = 32768
_LOG_FULL, _LOG_FIRST, _LOG_MIDDLE, _LOG_LAST = 1, 2, 3, 4


def _transaction_log_records(path: Path) -> Iterator[bytes]:
    """The protobuf payloads of a ``.wandb`` transaction log, in order."""
    import struct

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:4]!r})")
    pos, pending = _LOG_FILE_HEADER, b""
    while pos + _LOG_RECORD_HEADER <= len(data):
        left_in_block = _LOG_BLOCK - pos % _LOG_BLOCK
        if left_in_block < _LOG_RECORD_HEADER:  # block trailer: zero padding
            pos += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + _LOG_RECORD_HEADER])
        if kind == 0 and length == 0:  # zero-filled tail of the block
            pos += left_in_block
            continue
        chunk = data[pos + _LOG_RECORD_HEADER:pos + _LOG_RECORD_HEADER + length]
        pos += _LOG_RECORD_HEADER + length
        if kind == _LOG_FULL:
            yield chunk
        elif kind == _LOG_FIRST:
            pending = chunk
        elif kind == _LOG_MIDDLE:
            pending += chunk
        elif kind == _LOG_LAST:
            yield pending + chunk
            pending = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """What an offline run (``runs/wandb/offline-run-*``) holds, read from its transaction log.

    Returns ``{"name", "group", "job_type", "project", "config": {...}, "summary": {...},
    "history_keys": [...], "artifacts": [{"name", "type", "aliases", "files", "metadata"}],
    "files": [...]}`` (config and summary values JSON-decoded; summary = the last value of each key).
    """
    import json

    from wandb.proto import wandb_internal_pb2

    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"{run_dir} holds no run-*.wandb transaction log")
    out: dict[str, Any] = {"config": {}, "summary": {}, "history_keys": [], "artifacts": [], "files": []}
    history_keys: set[str] = set()
    for payload in _transaction_log_records(logs[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(name=run.display_name, group=run.run_group, job_type=run.job_type, project=run.project,
                       run_id=run.run_id)
            for item in run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history_keys.add(key)
                out["summary"][key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
        elif kind == "artifact":
            art = record.artifact
            out["artifacts"].append({
                "name": art.name, "type": art.type, "aliases": list(art.aliases),
                "files": [entry.path for entry in art.manifest.contents],
                "metadata": json.loads(art.metadata) if art.metadata else {},
            })
        elif kind == "files":
            out["files"] += [f.path for f in record.files.files]
    out["history_keys"] = sorted(history_keys)
    return out


@contextmanager
def offline_run(job_type: str, name: str, *, group: str = "default", config: Optional[Mapping[str, Any]] = None,
                save_dir: str | Path = DEFAULT_LOG_DIR) -> Iterator[Any]:
    """``wandb.init`` for a job outside Lightning (``ega evaluate``, the perf suite), offline unless
    ``WANDB_MODE`` says otherwise; yields None when wandb cannot be imported (the job still runs)."""
    try:
        import wandb
    except Exception:  # a missing or broken install: the job's own files are the record
        yield None
        return
    wandb_mode_default()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=WANDB_PROJECT, dir=str(save_dir), name=name, group=group, job_type=job_type,
                     config=dict(config or {}), reinit="create_new")
    try:
        yield run
    finally:
        run.finish()


__all__ = [
    "CONFIG_FILENAME", "DEFAULT_LOG_DIR", "WANDB_CONFIG_FILENAME",
    "WANDB_CONFIG_KEY", "WANDB_PROJECT", "artifact_name", "checkpoint_dirs", "kept_checkpoints", "offline_run", "read_offline_run",
    "run_directory", "run_identity", "wandb_logger_of", "wandb_mode_default", "wandb_offline",
]
