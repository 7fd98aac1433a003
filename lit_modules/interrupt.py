"""Runs that lose nothing on an interrupt, and checkpoint files that are never half-written.

- :class:`SaveOnInterrupt`: the first Ctrl+C (SIGINT) asks the run to stop after the current
  batch by raising SIGTERM, which Lightning turns into ``SIGTERMException`` once the batch's hooks
  have run;
  either way a resumable ``last.ckpt`` is written into every checkpoint directory before the
  process exits (resume with ``--ckpt_path last``). A second Ctrl+C aborts at once.
- :class:`LocalAtomicCheckpointIO`: writes a checkpoint to a temporary file in its destination
  directory, flushes it to disk and renames it over the old file (Lightning's own atomic save
  goes through ``$TMPDIR``, leaving checkpoint-sized orphans there when killed, and copies across
  file systems); reads local files only, with ``weights_only=True``.

:func:`install_checkpoint_safety` adds both to a trainer (the ``ega`` CLI does it for every run).
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from egakit.checkpoint import CheckpointError

#: The exit status of a run stopped by each signal (128 + the signal number, as shells report).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
LAST_NAME = "last.ckpt"
#: A checkpoint being written is ``.<name>.<pid>.tmp`` beside its destination.
TMP_PREFIX, TMP_SUFFIX = ".", ".tmp"
#: The signal that stopped the last run of this process (read by the CLI for its exit status).
_last_stop: dict[str, Optional[int]] = {"signal": None}


class LocalAtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoint IO that saves atomically *in the destination directory* and loads local
    files with ``weights_only=True`` (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{os.getpid()}{TMP_SUFFIX}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()

    def load_checkpoint(self, path: Any, map_location: Optional[Callable] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        if "://" in str(path):
            raise CheckpointError(path, "remote checkpoints are not loaded (unpickling one can run code); pass a local file")
        if not Path(path).is_file():
            raise CheckpointError(path, "no such file")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(path, f"cannot be loaded with weights_only=True (it holds objects that could "
                                        f"run code): {err}") from err


class SaveOnInterrupt(Callback):
    """Turn SIGINT into a stop at the end of the batch, and save ``last.ckpt`` on SIGINT / SIGTERM."""

    def __init__(self) -> None:
        self.stop_requested = False
        #: The signal that stopped the run (``signal.SIGINT`` / ``signal.SIGTERM``), else None.
        self.stopped_by: Optional[int] = None
        self._previous_handler: Any = None

    # -------------------------------------------------------------- SIGINT -> stop after the batch
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        print("\nInterrupted: stopping after this batch and saving last.ckpt (Ctrl+C again to abort)",
              file=sys.stderr, flush=True)
        # The first Ctrl+C becomes a SIGTERM: Lightning's own handler then stops the run where it
        # stops for SIGTERM, after the batch's hooks (and on every rank under DDP).
        os.kill(os.getpid(), signal.SIGTERM)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handler()

    # -------------------------------------------------------------- save on the way out
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.stopped_by = signal.SIGINT
        elif isinstance(exception, SIGTERMException):
            self.stopped_by = signal.SIGINT if self.stop_requested else signal.SIGTERM
        else:
            return
        _last_stop["signal"] = self.stopped_by
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        for directory in {Path(cb.dirpath) for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath}:
            path = directory / LAST_NAME
            trainer.save_checkpoint(path)
            if trainer.is_global_zero:
                print(f"Saved a resumable checkpoint at step {trainer.global_step}: {path} "
                      "(resume with --ckpt_path last)", file=sys.stderr, flush=True)
        self._restore_handler()


def install_checkpoint_safety(trainer: pl.Trainer) -> SaveOnInterrupt:
    """Give ``trainer`` the atomic local checkpoint IO and a :class:`SaveOnInterrupt` callback
    (returned; an existing one is reused)."""
    trainer.strategy.checkpoint_io = LocalAtomicCheckpointIO()
    for callback in trainer.callbacks:
        if isinstance(callback, SaveOnInterrupt):
            return callback
    callback = SaveOnInterrupt()
    trainer.callbacks.append(callback)
    return callback


def interrupt_exit_status() -> Optional[int]:
    """The exit status (130 SIGINT, 143 SIGTERM) when the last run of this process was stopped by
    a signal, else None; reading it clears it."""
    stopped, _last_stop["signal"] = _last_stop["signal"], None
    return None if stopped is None else EXIT_STATUS[stopped]
