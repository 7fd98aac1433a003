"""A tiny real training run that records what it consumed (used by test_data_resume.py).

    python tests/data/resume_job.py WORLD OUT CASE [CASE ...] [--crash-at STEP] [--resume]

CASE is ``w0``, ``w2`` (``num_workers``), optionally suffixed ``-unsized``: the train loader then
hides its length, so Lightning pre-fetches one batch ahead of the model (the situation that skipped
a batch on resume, docs/operations.md#resuming-mid-epoch). Each case trains a one-layer model (``nn.Linear`` on
the candidate features) with :class:`WorldDataModule` for ``MAX_EPOCHS`` epochs, checkpointing
every step into OUT/CASE/ckpt. After each batch the model has consumed (its
``on_train_batch_end``, after that step's checkpoint) one JSON line goes to
OUT/CASE/consumed.jsonl: epoch, request ids and a digest of the candidate ids.

``--crash-at S`` raises KeyboardInterrupt at global step S; Lightning then calls ``sys.exit``,
which this script catches only to go on with the next case (each case's run has ended by then).
``--kill-at S`` sends the process SIGKILL at global step S (nothing runs after it).
``--signal-at S --signal TERM|INT`` sends the process that signal at step S; the run then has no
per-step checkpoints, so OUT/CASE/ckpt/last.ckpt exists only if the interrupt saved it.
``--resume`` continues each case from OUT/CASE/ckpt/last.ckpt. Every finished run writes its
final weights to OUT/CASE/weights.pt. Every trainer gets :func:`egakit.lit.interrupt.install_checkpoint_safety`
(as ``ega fit`` gives it).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from egakit.data.request_stream import RequestLoader  # noqa: E402
from egakit.data.world import WorldDataModule  # noqa: E402
from egakit.batch import RequestBatch  # noqa: E402
from egakit.sim import schema  # noqa: E402
from egakit.lit.interrupt import install_checkpoint_safety, interrupt_exit_status  # noqa: E402

TRAIN_SPLIT = "pretrain[:96]"  # 12 batches of 8 per epoch: a few epochs in about a second
BATCH_SIZE = 8
MAX_EPOCHS = 2
NEG_SAMPLES = 40  # more than the platform-labelled ads, so popularity sampling runs too
FEATURE_SCALE = 100.0  # keeps the raw categorical ids in a sane range for the toy model


class ConsumptionRecorder(pl.LightningModule):
    """A real (tiny) model: candidate features → Linear → BCE on the labelled candidates."""

    def __init__(self, log_path: Path, crash_at: int = -1, signal_at: int = -1, signum: int = signal.SIGTERM):
        super().__init__()
        self.linear = nn.Linear(len(schema.AD_CATEGORICAL), 1)
        self.log_path = log_path
        self.crash_at = crash_at
        self.signal_at = signal_at
        self.signum = signum

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        if self.global_step == self.crash_at:
            raise KeyboardInterrupt(f"simulated crash at step {self.crash_at}")
        if self.global_step == self.signal_at:
            os.kill(os.getpid(), self.signum)
        logits = self.linear(batch.cand_feats.float() / FEATURE_SCALE).squeeze(-1)  # (B, N)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")
        return (loss * batch.label_mask).sum() / batch.label_mask.sum().clamp(min=1)

    def on_train_batch_end(self, outputs, batch: RequestBatch, batch_idx: int) -> None:
        position = torch.arange(1, batch.cand_ids.shape[1] + 1)
        record = {
            "rank": self.global_rank,
            "epoch": self.current_epoch,
            "request_ids": batch.request_id.tolist(),
            "cand_digest": int((batch.cand_ids * position).sum()),
        }
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class UnsizedRequestLoader(RequestLoader):
    """A RequestLoader whose length is unknown: Lightning then pre-fetches one batch ahead."""

    def __len__(self) -> int:
        raise TypeError("length withheld on purpose")


class UnsizedWorldDataModule(WorldDataModule):
    loader_class = UnsizedRequestLoader


def datamodule(world: str, case: str) -> WorldDataModule:
    num_workers = int(case.split("-")[0].lstrip("w"))
    cls = UnsizedWorldDataModule if case.endswith("-unsized") else WorldDataModule
    return cls(
        world,
        batch_size=BATCH_SIZE,
        num_workers=num_workers,
        neg_samples=NEG_SAMPLES,
        splits={"train": TRAIN_SPLIT},
        shuffle=True,
        shuffle_buffer=32,
        seed=7,
    )


def run(world: str, out: Path, case: str, crash_at: int = -1, resume: bool = False, signal_at: int = -1,
        signum: int = signal.SIGTERM) -> None:
    """One training run of ``case`` writing under ``out / case``."""
    folder = out / case
    folder.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_epochs=MAX_EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=folder / "ckpt", every_n_train_steps=0 if signal_at >= 0 and signum != signal.SIGKILL else 1,
                                   save_last=True, save_top_k=0)],
    )
    install_checkpoint_safety(trainer)
    model = ConsumptionRecorder(folder / "consumed.jsonl", crash_at, signal_at, signum)
    trainer.fit(model, datamodule=datamodule(world, case), ckpt_path="last" if resume else None)
    torch.save(model.linear.state_dict(), folder / "weights.pt")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("world")
    parser.add_argument("out", type=Path)
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--crash-at", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--signal-at", type=int, default=-1)
    parser.add_argument("--signal", choices=("TERM", "INT"), default="TERM")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    crash_at, signal_at, signum = args.crash_at, args.signal_at, getattr(signal, f"SIG{args.signal}")
    if args.kill_at >= 0:
        signal_at, signum = args.kill_at, signal.SIGKILL
    for case in args.cases:
        try:
            run(args.world, args.out, case, crash_at, args.resume, signal_at, signum)
        except SystemExit as exc:  # the run stopped on a signal (or Lightning's exit after an interrupt)
            status = interrupt_exit_status()
            print(f"{case}: run ended with exit code {exc.code if status is None else status}", file=sys.stderr)


if __name__ == "__main__":
    main()


class GlobalBatchModel(ConsumptionRecorder):
    """ConsumptionRecorder whose loss is a mean over requests (each request's mean BCE over its
    labelled candidates), so DDP's gradient average over ranks of equal batch size equals one
    process's gradient on their union; validation logs a torchmetrics mean, synced across ranks."""

    def __init__(self, log_path: Path):
        super().__init__(log_path)
        from torchmetrics import MeanMetric

        self.val_loss = MeanMetric()

    def _per_request(self, batch: RequestBatch) -> torch.Tensor:
        logits = self.linear(batch.cand_feats.float() / FEATURE_SCALE).squeeze(-1)  # (B, N)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")
        return (loss * batch.label_mask).sum(1) / batch.label_mask.sum(1).clamp(min=1)  # (B,)

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        return self._per_request(batch).mean()

    def validation_step(self, batch: RequestBatch, batch_idx: int) -> None:
        real = batch.label_mask.any(1)
        self.val_loss.update(self._per_request(batch)[real])
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=int(real.sum()))


GLOBAL_BATCH = 16
GLOBAL_TRAIN_SPLIT = "pretrain[:96]"
GLOBAL_VAL_SPLIT = "posttrain[:32]"
GLOBAL_STEPS = 4


def run_global(world: str, out: Path, devices: int) -> tuple[dict, float, list[dict]]:
    """``GLOBAL_STEPS`` steps of global batch ``GLOBAL_BATCH`` on ``devices`` CPU processes
    (ddp_spawn, gloo) → (final weights, validation loss, consumed records of every rank)."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "consumed.jsonl"
    pl.seed_everything(0, verbose=False)
    dm = WorldDataModule(
        world, batch_size=GLOBAL_BATCH // devices, eval_batch_size=GLOBAL_BATCH // devices, neg_samples=NEG_SAMPLES,
        splits={"train": GLOBAL_TRAIN_SPLIT, "val": GLOBAL_VAL_SPLIT}, shuffle=True, shuffle_buffer=32, seed=7,
    )
    trainer = pl.Trainer(
        max_steps=GLOBAL_STEPS, accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
        deterministic=True, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, val_check_interval=GLOBAL_STEPS,
    )
    model = GlobalBatchModel(log)
    trainer.fit(model, datamodule=dm)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    weights = {k: v.detach().clone() for k, v in model.linear.state_dict().items()}
    return weights, float(trainer.callback_metrics["val/loss"]), records
