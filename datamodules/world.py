"""``WorldDataModule``: streams a synthetic world's requests as :class:`RequestBatch` es.

Stages map to world splits through ``splits`` (defaults :data:`DEFAULT_SPLITS`): pre-training fits
on ``pretrain`` and validates on a slice of ``posttrain``; the RL phases set ``train: posttrain``.
A split name may carry a slice of its first rows, ``"posttrain[:1024]"``.

Workers build per-request samples of ids (:mod:`egakit.data.request_stream`) and collate them
(:mod:`egakit.data.collate`); after the batch reaches its device, ``on_after_batch_transfer``
gathers ``cand_feats`` (and ``cross_feats`` when enabled) from the local ad store's tensors on
that device, one ``index_select``.

Exact resume: the train loader checkpoints the train stream's (epoch, consumed batches); the
:class:`ConsumedBatchesTracker` callback, added by :meth:`WorldDataModule.setup`, counts a batch
only in ``on_train_batch_end``, i.e. once the model has consumed it (the loader itself runs ahead).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from egakit.data.collate import RequestCollate
from egakit.data.request_stream import RequestLoader, RequestStream
from egakit.batch import RequestBatch
from egakit.errors import WorldDataError
from egakit.features.cross import CrossFeatureSpec, cross_features
from egakit.features.local_store import CandidateSets, LocalAdStore
from egakit.features.remote_store import ParquetUserStore
from egakit.sim import schema
from egakit.sim.io import load_world_meta

#: Lightning loader → world split (a split may be sliced: ``"posttrain[:1024]"``).
DEFAULT_SPLITS = {"train": "pretrain", "val": "posttrain[:1024]", "test": "test", "predict": "test"}
_SPLIT_RE = re.compile(r"^(?P<name>\w+)(\[:(?P<limit>\d+)\])?$")


def parse_split(spec: str) -> tuple[str, Optional[int]]:
    """``"posttrain[:1024]"`` → ``("posttrain", 1024)``; ``"test"`` → ``("test", None)``."""
    match = _SPLIT_RE.match(spec.strip())
    if match is None or match["name"] not in schema.SPLITS:
        raise ValueError(f"bad split {spec!r}: expected one of {schema.SPLITS}, optionally sliced as 'name[:N]'")
    return match["name"], None if match["limit"] is None else int(match["limit"])


class ConsumedBatchesTracker(Callback):
    """Counts the training batches the model consumed into the DataModule's train stream.

    Added by :meth:`WorldDataModule.setup` ahead of every other callback, so the count already
    includes a batch when a checkpoint callback saves in the same ``on_train_batch_end``.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stream = _train_stream(trainer)
        if stream is not None:
            stream.set_epoch(trainer.current_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        stream = _train_stream(trainer)
        if stream is not None:
            stream.advance()


def _train_stream(trainer: pl.Trainer) -> Optional[RequestStream]:
    dm = trainer.datamodule
    return dm.train_stream if isinstance(dm, WorldDataModule) else None


class WorldDataModule(pl.LightningDataModule):
    """Requests of a synthetic world as :class:`RequestBatch` es.

    ``loader_class`` (class attribute) builds every loader; subclasses may swap it.

    Args:
        world_dir: the world directory (``ega world --out DIR``).
        batch_size: requests per training batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        train_mode: ``"train"`` (K exposed + N_s popularity-sampled, V1 §4.1) or ``"full"``
            (the whole candidate set, for RLAF).
        neg_samples: N_s, unexposed candidates per request in train mode (docs/design.md §5).
        max_behaviours: L served per user; ``None`` takes world.json's ``max_behaviours``.
        eval_mode: candidate axis of the val/test/predict loaders, ``"full"`` or ``"train"``.
        cross_features: also fill ``cross_feats`` (baselines, "with CF" ablations).
        seed: seeds shuffling and candidate sampling (with the epoch).
        splits: overrides of :data:`DEFAULT_SPLITS` (keys ``train``, ``val``, ``test``, ``predict``).
        eval_batch_size: requests per val/test/predict batch (default: ``batch_size``).
        shuffle: shuffle the training split per epoch (row-group order and blocks of rows).
        shuffle_buffer: rows per shuffle block.
        train_remainder / eval_remainder: ``"drop"`` or ``"pad"`` rows that do not divide into
            equal shards (see :mod:`egakit.data.request_stream`).
        behaviours_before_request: serve only behaviours before the request time.
    """

    loader_class: type[RequestLoader] = RequestLoader

    def __init__(
        self,
        world_dir: str,
        batch_size: int = 32,
        num_workers: int = 0,
        train_mode: Literal["train", "full"] = "train",
        neg_samples: int = 2995,
        max_behaviours: Optional[int] = None,
        eval_mode: Literal["full", "train"] = "full",
        cross_features: bool = False,
        seed: int = 0,
        splits: Optional[dict[str, str]] = None,
        eval_batch_size: Optional[int] = None,
        shuffle: bool = True,
        shuffle_buffer: int = 1024,
        train_remainder: Literal["drop", "pad"] = "drop",
        eval_remainder: Literal["drop", "pad"] = "pad",
        behaviours_before_request: bool = True,
    ):
        super().__init__()
        self.world_dir = str(world_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_mode = train_mode
        self.neg_samples = neg_samples
        self.max_behaviours = max_behaviours
        self.eval_mode = eval_mode
        self.cross_features = cross_features
        self.seed = seed
        unknown = set(splits or {}) - set(DEFAULT_SPLITS)
        if unknown:
            raise ValueError(f"unknown splits keys {sorted(unknown)}; valid keys: {sorted(DEFAULT_SPLITS)}")
        self.splits = {**DEFAULT_SPLITS, **(splits or {})}
        for spec in self.splits.values():
            parse_split(spec)
        self.eval_batch_size = eval_batch_size or batch_size
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.train_remainder = train_remainder
        self.eval_remainder = eval_remainder
        self.behaviours_before_request = behaviours_before_request

        self.meta = load_world_meta(Path(world_dir))
        self.cross_spec = (
            CrossFeatureSpec.for_world(self.meta)
            if cross_features
            else None
        )
        self.ad_store: Optional[LocalAdStore] = None
        self.candidate_sets: Optional[CandidateSets] = None
        self.user_store: Optional[ParquetUserStore] = None
        self.train_stream: Optional[RequestStream] = None
        self._tracking = False

    # -- sizes the CLI links to the model -------------------------------------------------------
    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Embedding-table sizes per categorical feature (world.json ``vocab``, plus the cross
        features' when ``cross_features``)."""
        sizes = {name: int(v) for name, v in self.meta["vocab"].items()}
        if self.cross_spec is not None:
            sizes.update(self.cross_spec.vocab_sizes)
        return sizes

    @property
    def cross_vocab_sizes(self) -> Optional[list[int]]:
        """One vocabulary size per ``cross_feats`` column (``CROSS_FEATURES`` order), or ``None``
        when cross features are off."""
        if self.cross_spec is None:
            return None
        return self.cross_spec.column_vocab_sizes

    @property
    def num_slots(self) -> int:
        """K, the ad slots per request."""
        return int(self.meta["K"])

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Load the stores (once); when fitting under a Trainer, install the consumed-batch tracker."""
        self._load_stores()
        trainer = self.trainer
        if stage == "fit" and trainer is not None:
            if not any(isinstance(cb, ConsumedBatchesTracker) for cb in trainer.callbacks):
                trainer.callbacks.insert(0, ConsumedBatchesTracker())  # before any checkpoint callback
            self._tracking = True

    def _load_stores(self) -> None:
        if self.ad_store is None:
            self.ad_store = LocalAdStore(self.world_dir)
            self.candidate_sets = CandidateSets(self.world_dir, self.ad_store)
            self.user_store = ParquetUserStore(self.world_dir, self.max_behaviours)

    def _stream(self, loader: str, *, mode: str, batch_size: int, shuffle: bool, remainder: str) -> RequestStream:
        self._load_stores()
        split, limit = parse_split(self.splits[loader])
        trainer = self.trainer
        return RequestStream(
            self.world_dir,
            split,
            mode=mode,
            neg_samples=self.neg_samples,
            batch_size=batch_size,
            num_workers=self.num_workers,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            seed=self.seed,
            shuffle=shuffle,
            shuffle_buffer=self.shuffle_buffer,
            remainder=remainder,
            limit=limit,
            behaviours_before_request=self.behaviours_before_request,
            ad_store=self.ad_store,
            candidate_sets=self.candidate_sets,
            user_store=self.user_store,
        )

    def _loader(self, stream: RequestStream, count_yielded: bool) -> RequestLoader:
        if stream.num_batches() == 0:
            loader = next((name for name, spec in self.splits.items() if parse_split(spec)[0] == stream.split), "?")
            raise WorldDataError(
                Path(self.world_dir) / "requests" / stream.split, None, None,
                f"the {loader} loader's split {self.splits.get(loader, stream.split)!r} yields no batch "
                f"({stream.num_requests} requests for {stream.world_size} rank(s) of batch size {stream.batch_size}): "
                "an empty split would train or validate on nothing; choose a split or slice that has requests",
            )
        return self.loader_class(stream, RequestCollate(stream.ad_store), count_yielded=count_yielded)

    def train_dataloader(self) -> RequestLoader:
        self.train_stream = self._stream(
            "train", mode=self.train_mode, batch_size=self.batch_size, shuffle=self.shuffle, remainder=self.train_remainder
        )
        return self._loader(self.train_stream, count_yielded=not self._tracking)

    def _eval_loader(self, loader: str) -> RequestLoader:
        stream = self._stream(
            loader, mode=self.eval_mode, batch_size=self.eval_batch_size, shuffle=False, remainder=self.eval_remainder
        )
        return self._loader(stream, count_yielded=False)  # every evaluation pass is whole

    def val_dataloader(self) -> RequestLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> RequestLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> RequestLoader:
        return self._eval_loader("predict")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Fill ``cand_feats`` (and ``cross_feats``) from the local store on the batch's device."""
        if not isinstance(batch, RequestBatch):
            return batch
        return self.fill_features(batch)

    def fill_features(self, batch: RequestBatch) -> RequestBatch:
        """``batch`` with ``cand_feats`` (B, N, F_a) and, when enabled, ``cross_feats`` (B, N, F_x)."""
        self._load_stores()
        cand_feats = self.ad_store.gather(batch.cand_rows)
        cross = None
        if self.cross_spec is not None:
            cross = cross_features(
                self.cross_spec, cand_feats, batch.cand_mask, batch.user_feats, batch.bhv_feats, batch.bhv_mask
            )
        return batch.replace(cand_feats=cand_feats, cross_feats=cross)
