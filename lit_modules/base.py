"""Base LightningModule of the EGA-V1 training phases (docs/design.md §5).

A phase module builds the whole :class:`~egakit.model.ega_v1.EGAV1` as ``self.model``, restores
the modules it needs from the previous phase's checkpoint (``init_from``, at ``setup("fit")``),
trains the modules of its row of the docs/design.md §5 table and freezes the rest: ``requires_grad=False``
*and* eval mode (Dice keeps running statistics in train mode), kept in eval mode whatever
Lightning's ``train()`` calls do. The maths lives in :mod:`egakit.training`; subclasses wire it to
``training_step`` / ``validation_step`` and logging.

Checkpoints carry provenance metadata and load with ``torch.load(weights_only=True)``
(:mod:`egakit.checkpoint`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Union

import lightning.pytorch as pl
import torch
from torch import Tensor

from egakit import checkpoint as ckpt_lib
from egakit.batch import RequestBatch
from egakit.checkpoint import ENCODER, EVALUATOR, GENERATOR, PAYMENT
from egakit.model.config import EGAV1Config
from egakit.model.ega_v1 import EGAV1
from egakit.training.lr_schedule import LRSchedule

#: Every module group of EGAV1, by state-dict prefix.
ALL_GROUPS: tuple[str, ...] = ENCODER + EVALUATOR + GENERATOR + PAYMENT


def _as_config(model: Union[EGAV1Config, Mapping[str, Any]]) -> EGAV1Config:
    if isinstance(model, EGAV1Config):
        return model
    if isinstance(model, Mapping):  # hparams of a saved checkpoint, or a plain dict from Python
        return EGAV1Config(**dict(model))
    raise TypeError(f"model must be an EGAV1Config (or a dict of its fields), got {type(model).__name__}")


def _as_schedule(schedule: Union[LRSchedule, Mapping[str, Any], None]) -> LRSchedule:
    if schedule is None:
        return LRSchedule()
    if isinstance(schedule, LRSchedule):
        return schedule
    if isinstance(schedule, Mapping):  # hparams of a saved checkpoint
        return LRSchedule(**dict(schedule))
    raise TypeError(f"lr_schedule must be an LRSchedule (or a dict of its fields), got {type(schedule).__name__}")


class EGAV1Module(pl.LightningModule):
    """Common part of the four phase modules.

    Args:
        model: the EGA-V1 hyper-parameters (:class:`~egakit.model.config.EGAV1Config`; nested
            YAML keys under ``init_args.model``).
        vocab_sizes: embedding-table sizes; the ``ega`` CLI fills them from the world's
            world.json when left ``None``.
        num_slots: K of the world (filled the same way); must equal ``model.K``.
        lr: Adam learning rate (V1 §5.1.4: 1e-3).
        init_from: checkpoint of the previous phase; the modules this phase needs are restored
            from it when fitting starts (``None``: start from scratch, only for pre-training).
        cross_vocab_sizes: one size per explicit cross-feature column, needed only with
            ``model.use_cross_features``.
        lr_schedule: shape of the rate over the run (:class:`~egakit.training.lr_schedule.LRSchedule`;
            YAML ``lr_schedule: {kind: cosine, warmup_steps: 100, min_ratio: 0.05}``); ``None`` =
            constant. A cosine schedule spans ``trainer.max_steps``.

    Class attributes of a phase: ``phase`` (its name), ``trainable`` (module prefixes it
    optimises), ``required`` (prefixes ``init_from`` must provide, trained).
    """

    phase: ClassVar[str] = "base"
    trainable: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: EGAV1Config,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        lr: float = 1e-3,
        init_from: Optional[str] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        lr_schedule: Optional[LRSchedule] = None,
    ) -> None:
        super().__init__()
        config = _as_config(model)
        schedule = _as_schedule(lr_schedule)
        if vocab_sizes is None:
            raise ValueError(
                f"{type(self).__name__}: vocab_sizes is None. The `ega` CLI fills it from "
                "<data.init_args.world_dir>/world.json; pass it explicitly (world.json 'vocab') otherwise"
            )
        if num_slots is None:
            raise ValueError(
                f"{type(self).__name__}: num_slots is None. The `ega` CLI fills it from the world's "
                "world.json 'K'; pass it explicitly otherwise"
            )
        if int(num_slots) != config.K:
            raise ValueError(f"num_slots={num_slots} (the world's K) differs from model.K={config.K}: set model.K={num_slots}")
        if config.use_cross_features and not cross_vocab_sizes:
            raise ValueError("model.use_cross_features=True needs cross_vocab_sizes (one size per cross feature column)")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters()
        # Store the config as a plain dict: checkpoints must load with weights_only=True.
        self.hparams["model"] = ckpt_lib.config_dict(config)
        self.hparams["lr_schedule"] = dataclasses.asdict(schedule)
        self.config = config
        self.vocab_sizes = {str(k): int(v) for k, v in vocab_sizes.items()}
        self.cross_vocab_sizes = None if not cross_vocab_sizes else [int(v) for v in cross_vocab_sizes]
        self.num_slots = int(num_slots)
        self.lr = lr
        self.lr_schedule = schedule
        self.init_from = init_from
        self.model = EGAV1(config, self.vocab_sizes, self.cross_vocab_sizes if config.use_cross_features else None)
        #: Modules some phase has trained (checkpoint provenance): what init_from provided, plus ours.
        self.trained_modules: set[str] = set()
        self._world: Optional[dict[str, Any]] = None
        self._max_behaviours: Optional[int] = None
        self._initialised = False
        self._oracle = None
        self.apply_freezing()

    # ------------------------------------------------------------------ freezing
    @property
    def frozen(self) -> tuple[str, ...]:
        """Module prefixes this phase does not optimise."""
        return tuple(p for p in ALL_GROUPS if p not in self.trainable)

    def _submodule(self, prefix: str) -> torch.nn.Module:
        return self.get_submodule(prefix)

    def apply_freezing(self) -> None:
        """``requires_grad=False`` and eval mode for every module outside ``trainable``."""
        for prefix in self.frozen:
            sub = self._submodule(prefix)
            sub.requires_grad_(False)
            sub.eval()

    def train(self, mode: bool = True) -> "EGAV1Module":
        """Lightning calls ``train()`` around every loop; frozen modules stay in eval mode."""
        super().train(mode)
        for prefix in self.frozen:
            self._submodule(prefix).eval()
        return self

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        params = [p for prefix in self.trainable for p in self._submodule(prefix).parameters()]
        if not params:
            raise ValueError(f"phase {self.phase!r} has no trainable parameters (trainable={self.trainable})")
        return params

    # ------------------------------------------------------------------ init_from / checkpoints
    def expected_metadata(self) -> dict[str, Any]:
        """What a checkpoint must match for its weights to fit this module."""
        return {
            "model_config": ckpt_lib.config_dict(self.config),
            "vocab_sizes": self.vocab_sizes,
            "cross_vocab_sizes": self.cross_vocab_sizes,
            "num_slots": self.num_slots,
            "world": self._world,
        }

    def checkpoint_identity(self) -> dict[str, Any]:
        """What a checkpoint this run resumes from (``--ckpt_path``) must match: an EGA-V1
        checkpoint of this phase, model configuration, vocabularies and K."""
        identity = {"kind": ckpt_lib.EGA_V1_KIND, "phase": self.phase, **self.expected_metadata()}
        identity.pop("world")
        return identity

    def load_init(self, path: Optional[str] = None) -> Optional[ckpt_lib.LoadedInit]:
        """Restore ``required`` (and already-trained ``trainable``) modules from ``path``
        (default ``init_from``); raises :class:`~egakit.checkpoint.CheckpointError` otherwise."""
        path = self.init_from if path is None else path
        if path is None:
            if self.required:
                raise ValueError(
                    f"phase {self.phase!r} needs init_from: a checkpoint with trained {', '.join(self.required)}"
                )
            return None
        loaded = ckpt_lib.load_init(
            self, path, self.required, optional_prefixes=self.trainable, expected=self.expected_metadata()
        )
        self.trained_modules |= set(loaded.metadata.get("trained", ()))
        return loaded

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        meta = getattr(dm, "meta", None)
        if isinstance(meta, Mapping) and "schema_version" in meta:
            self._world = ckpt_lib.world_identity(meta)
            served = getattr(dm, "max_behaviours", None)
            self._max_behaviours = int(served if served is not None else meta["max_behaviours"])
        if stage == "fit" and not self._initialised:
            self.load_init()
            self._initialised = True
        self.apply_freezing()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ckpt_lib.METADATA_KEY] = ckpt_lib.build_metadata(
            phase=self.phase,
            config=self.config,
            vocab_sizes=self.vocab_sizes,
            cross_vocab_sizes=self.cross_vocab_sizes,
            num_slots=self.num_slots,
            trained=sorted(self.trained_modules | set(self.trainable)),
            world=self._world,
            max_behaviours=self._max_behaviours,
        )
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = ckpt_lib.make_weights_only_safe(checkpoint[key])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(ckpt_lib.METADATA_KEY)
        if isinstance(meta, Mapping):
            self.trained_modules |= set(meta.get("trained", ()))
            self._initialised = True  # a full restore (resume / evaluation) supersedes init_from

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> Union[torch.optim.Optimizer, dict[str, Any]]:
        """Adam over the trainable modules only (V1 §5.1.4), its rate shaped per step by
        ``lr_schedule`` over ``trainer.max_steps``."""
        optimizer = torch.optim.Adam(self.trainable_parameters(), lr=self.lr)
        if self.lr_schedule.kind == "constant":
            return optimizer
        total = self.trainer.max_steps
        if total is None or total < 0:
            raise ValueError(f"lr_schedule kind={self.lr_schedule.kind!r} spans trainer.max_steps: set it (got {total})")
        schedule = self.lr_schedule
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ inference (ega predict)
    def allocates(self) -> bool:
        """Whether this module's trained modules serve a full allocation: the generator, plus the
        payment network unless prices are critical bids (``allocation="gsp"``: the encoder alone)."""
        if self.config.allocation == "gsp":
            return True
        needed = GENERATOR + (() if self.config.payment_rule == "critical" else PAYMENT)
        return all(prefix in self.trained_modules for prefix in needed)

    def forward(self, batch: RequestBatch) -> tuple[Tensor, Tensor]:
        """Serving: winners' ad ids (B, K) and per-click payments (B, K) (:meth:`EGAV1.allocate`)."""
        return self.model.allocate(batch)

    def predict_step(self, batch: RequestBatch, batch_idx: int) -> dict[str, list]:
        """Per request (shard padding dropped): ``winners`` (K ad ids) and ``payments`` (K per-click
        prices) when :meth:`allocates`, else ``candidate_ids`` and their ``pctr`` (EGA-V1 Eq. 16):
        a pre-training or reward checkpoint has no trained generator to allocate with.

        Raises:
            RuntimeError: the encoder was never trained (``ega predict`` without ``--ckpt_path``).
        """
        if not all(prefix in self.trained_modules for prefix in ENCODER):
            raise RuntimeError(
                f"{type(self).__name__}: predicting with an untrained encoder; pass the trained "
                "checkpoint: ega predict -c CONFIG --ckpt_path CKPT"
            )
        rows = batch.real_requests()
        request_ids = batch.request_id[rows].tolist()
        if self.allocates():
            winners, payments = self(batch)
            return {"request_id": request_ids, "winners": winners[rows].tolist(), "payments": payments[rows].tolist()}
        pctr = self.model.pctr(batch)
        kept = rows.nonzero().squeeze(1).tolist()
        return {
            "request_id": request_ids,
            "candidate_ids": [batch.cand_ids[i][batch.cand_mask[i]].tolist() for i in kept],
            "pctr": [pctr[i][batch.cand_mask[i]].tolist() for i in kept],
        }

    # ------------------------------------------------------------------ helpers for subclasses
    @staticmethod
    def real_requests(batch: RequestBatch) -> Tensor:
        """(B,) bool: requests that carry labels. Evaluation loaders pad the last shard with
        repeated requests stripped of labels; they must not count in per-request metrics."""
        return batch.label_mask.any(dim=1)

    def oracle(self):
        """The world's :class:`~egakit.sim.oracle.Oracle` (truth), or None without a world."""
        if self._oracle is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            world_dir = getattr(dm, "world_dir", None)
            if world_dir is None or not (Path(world_dir) / "world.json").is_file():
                return None
            from egakit.sim.oracle import Oracle

            self._oracle = Oracle.from_world(world_dir, device=self.device)
        return self._oracle

    def log_scalars(self, prefix: str, values: Mapping[str, Any], *, batch_size: int, on_step: bool = False) -> None:
        """``self.log`` every value under ``prefix/``, epoch-averaged and DDP-synced."""
        for name, value in values.items():
            self.log(
                f"{prefix}/{name}",
                value,
                batch_size=batch_size,
                on_step=on_step,
                on_epoch=True,
                sync_dist=True,
                prog_bar=name in ("loss", "reward", "auc", "regret"),
            )


__all__ = ["ALL_GROUPS", "EGAV1Module"]
