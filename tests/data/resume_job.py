"""A tiny real training run that records what it consumed (used by test_data_resume.py).

    python tests/data/resume_job.py WORLD OUT CASE [CASE ...] [--crash-at STEP] [--resume]

CASE is ``w0``, ``w2`` (``num_workers``), optionally suffixed ``-unsized``: the train loader then
hides its length, so Lightning pre-fetches one batch ahead of the model (the situation in which
NOTES measured a skipped batch on resume). Each case trains a one-layer model (``nn.Linear`` on
the candidate features) with :class:`WorldDataModule` for ``MAX_EPOCHS`` epochs, checkpointing
every step into OUT/CASE/ckpt. After each batch the model has consumed (its
``on_train_batch_end``, after that step's checkpoint) one JSON line goes to
OUT/CASE/consumed.jsonl: epoch, request ids and a digest of the candidate ids.

``--crash-at S`` raises KeyboardInterrupt at global step S; Lightning then calls ``sys.exit``,
which this script catches only to go on with the next case (each case's run has ended by then).
``--resume`` continues each case from OUT/CASE/ckpt/last.ckpt.
"""
from __future__ import annotations

import argparse
import json
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

TRAIN_SPLIT = "pretrain[:96]"  # 12 batches of 8 per epoch: a few epochs in about a second
BATCH_SIZE = 8
MAX_EPOCHS = 2
NEG_SAMPLES = 40  # more than the platform-labelled ads, so popularity sampling runs too
FEATURE_SCALE = 100.0  # keeps the raw categorical ids in a sane range for the toy model


class ConsumptionRecorder(pl.LightningModule):
    """A real (tiny) model: candidate features → Linear → BCE on the labelled candidates."""

    def __init__(self, log_path: Path, crash_at: int = -1):
        super().__init__()
        self.linear = nn.Linear(len(schema.AD_CATEGORICAL), 1)
        self.log_path = log_path
        self.crash_at = crash_at

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        if self.global_step == self.crash_at:
            raise KeyboardInterrupt(f"simulated crash at step {self.crash_at}")
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


def run(world: str, out: Path, case: str, crash_at: int = -1, resume: bool = False) -> None:
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
        callbacks=[ModelCheckpoint(dirpath=folder / "ckpt", every_n_train_steps=1, save_last=True, save_top_k=0)],
    )
    model = ConsumptionRecorder(folder / "consumed.jsonl", crash_at)
    trainer.fit(model, datamodule=datamodule(world, case), ckpt_path="last" if resume else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("world")
    parser.add_argument("out", type=Path)
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--crash-at", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for case in args.cases:
        try:
            run(args.world, args.out, case, args.crash_at, args.resume)
        except SystemExit as exc:  # Lightning's exit after the KeyboardInterrupt: this run is over
            print(f"{case}: run ended with exit code {exc.code}", file=sys.stderr)


if __name__ == "__main__":
    main()
