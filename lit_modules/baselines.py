"""LightningModules of the cascade baselines (V1 §5.1.3, docs/design.md §7): one per trained stage.

- :class:`SASRecModule` — recall, sampled softmax (or BCE) against the request's candidates;
- :class:`DSSMModule` — pre-rank, BCE;
- :class:`DINModule` — rank, BCE; ``model.use_cross_features`` for the "with CF" rows.

``fs_ltr=False`` trains a stage the MCA way, on its own logs; ``fs_ltr=True`` on FS-LTR's
full-stage relabelled samples (:mod:`egakit.baselines.relabel`). An FS-LTR stage may also take a
``teacher_ckpt``: the checkpoint of a *later* stage, whose top ``teacher_top`` candidates by
pCTR · bid count as "passed the later stages" (FS-LTR's selection-bias estimate) — so train rank
first, then pre-rank with the rank as teacher, then recall.

The modules are thin: models, targets and losses live in :mod:`egakit.baselines`. Checkpoints
carry the ``"egakit"`` metadata of :mod:`egakit.baselines.checkpoint` and load with
``torch.load(weights_only=True)``; ``ega evaluate`` builds the cascade from them.

Validation / test log ``loss``, ``auc`` (pCTR stages, over the labelled candidates) and
``recall@k`` (candidates ranked by the stage's score against the clicked ones).
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from egakit import checkpoint as ckpt_lib
from egakit.baselines.checkpoint import (
    build_stage_model,
    load_stage_model,
    stage_config,
    stage_metadata,
    uses_cross_features,
)
from egakit.baselines.common import STAGES, resolve_cross_vocab_sizes
from egakit.baselines.din import DINConfig
from egakit.baselines.dssm import DSSMConfig
from egakit.baselines.losses import sampled_softmax, weighted_bce
from egakit.baselines.relabel import (
    FullStageLabels,
    FunnelOutcome,
    downstream_selection,
    full_stage_targets,
    stage_local_targets,
)
from egakit.baselines.sasrec import SASRecConfig
from egakit.batch import RequestBatch
from egakit.metrics import AUC, RecallAtK
from egakit.metrics.ranking import DEFAULT_RECALL_K

EVAL_STAGES = ("val", "test")
#: Stages whose scores are CTR logits (and may therefore teach an earlier stage).
CTR_STAGES = ("prerank", "rank")


class BaselineStageModule(pl.LightningModule):
    """Common part of the three stage modules.

    Args:
        model: the stage model's config dataclass (nested YAML keys under ``init_args.model``).
        vocab_sizes: embedding-table sizes; the ``ega`` CLI fills them from world.json when None.
        num_slots: K (filled the same way); the default ``teacher_top``.
        cross_vocab_sizes: one size per cross-feature column (default: derived from the world's
            categories, :func:`egakit.baselines.common.resolve_cross_vocab_sizes`).
        lr, weight_decay: Adam's.
        fs_ltr: train on FS-LTR's full-stage relabelled samples instead of the stage's own logs.
        click_target, pass_target, negative_target: FS-LTR target values (:class:`FullStageLabels`).
        teacher_ckpt: FS-LTR only: checkpoint of a later pCTR stage whose choices count as passed.
        teacher_top: how many candidates the teacher passes per request (default ``num_slots``).
        teacher_by_bid: the teacher ranks by pCTR · bid (the auction's order) instead of pCTR.
        recall_k: k of the logged Recall@k.
    """

    stage: ClassVar[str] = ""

    def __init__(
        self,
        model: Any,
        vocab_sizes: Optional[dict[str, int]],
        num_slots: Optional[int],
        cross_vocab_sizes: Optional[list[int]],
        lr: float,
        weight_decay: float,
        fs_ltr: bool,
        click_target: float,
        pass_target: float,
        negative_target: float,
        teacher_ckpt: Optional[str],
        teacher_top: Optional[int],
        teacher_by_bid: bool,
        recall_k: int,
    ) -> None:
        super().__init__()
        if self.stage not in STAGES:
            raise TypeError(f"{type(self).__name__}.stage must be one of {STAGES}")
        if vocab_sizes is None:
            raise ValueError(
                f"{type(self).__name__}: vocab_sizes is None. The `ega` CLI fills it from "
                "<data.init_args.world_dir>/world.json; pass it explicitly (world.json 'vocab') otherwise"
            )
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
        if teacher_ckpt is not None and not fs_ltr:
            raise ValueError("teacher_ckpt is FS-LTR's selection estimate: set fs_ltr=true or drop teacher_ckpt")
        if teacher_ckpt is not None and self.stage == "rank":
            raise ValueError("the rank stage has no later model stage to learn from: drop teacher_ckpt")
        if teacher_top is not None and teacher_top < 1:
            raise ValueError(f"teacher_top must be >= 1, got {teacher_top}")
        if isinstance(model, Mapping):  # hyper-parameters of a saved checkpoint
            model = stage_config(self.stage, model)
        self.config = model
        self.vocab_sizes = {str(k): int(v) for k, v in vocab_sizes.items()}
        self.cross_vocab_sizes = (
            resolve_cross_vocab_sizes(self.vocab_sizes, cross_vocab_sizes) if uses_cross_features(model) else None
        )
        self.num_slots = None if num_slots is None else int(num_slots)
        self.lr = lr
        self.weight_decay = weight_decay
        self.fs_ltr = fs_ltr
        self.labels_scheme = FullStageLabels(click_target, pass_target, negative_target)
        self.teacher_ckpt = teacher_ckpt
        self.teacher_top = teacher_top
        self.teacher_by_bid = teacher_by_bid
        self.model = build_stage_model(self.stage, model, self.vocab_sizes, self.cross_vocab_sizes)
        self.__dict__["teacher"] = None  # a frozen helper, deliberately not a submodule (not saved)
        self._world: Optional[dict[str, Any]] = None
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {"recall": RecallAtK(recall_k), **({"auc": AUC()} if self.stage in CTR_STAGES else {})}
                )
                for stage in EVAL_STAGES
            }
        )
        self.recall_k = recall_k

    # ------------------------------------------------------------------ setup / checkpoints
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        meta = getattr(dm, "meta", None)
        if isinstance(meta, Mapping) and "schema_version" in meta:
            self._world = ckpt_lib.world_identity(meta)
        if stage == "fit" and self.teacher_ckpt is not None and self.teacher is None:
            self.__dict__["teacher"] = self._load_teacher(self.teacher_ckpt)

    def _load_teacher(self, path: str) -> nn.Module:
        loaded = load_stage_model(path)
        if loaded.stage not in CTR_STAGES or STAGES.index(loaded.stage) <= STAGES.index(self.stage):
            raise ValueError(
                f"teacher_ckpt {path} holds the {loaded.stage!r} stage; the {self.stage!r} stage needs a later "
                f"pCTR stage ({', '.join(s for s in CTR_STAGES if STAGES.index(s) > STAGES.index(self.stage))})"
            )
        teacher = loaded.model.to(self.device).eval()
        teacher.requires_grad_(False)
        return teacher

    def _metadata(self) -> dict[str, Any]:
        return stage_metadata(
            stage=self.stage,
            training="fs_ltr" if self.fs_ltr else "mca",
            config=self.config,
            vocab_sizes=self.vocab_sizes,
            cross_vocab_sizes=self.cross_vocab_sizes,
            num_slots=self.num_slots,
            world=self._world,
        )

    def checkpoint_identity(self) -> dict[str, Any]:
        """What a checkpoint this run resumes from (``--ckpt_path``) must match: a baseline
        checkpoint of this stage and training, model configuration and vocabularies."""
        identity = self._metadata()
        for key in ("format", "world"):
            identity.pop(key)
        return identity

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ckpt_lib.METADATA_KEY] = self._metadata()
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = ckpt_lib.make_weights_only_safe(checkpoint[key])

    # ------------------------------------------------------------------ targets and loss
    def forward(self, batch: RequestBatch) -> Tensor:
        """The stage's scores (B, N): recall scores or CTR logits."""
        return self.model(batch)

    def predict_step(self, batch: RequestBatch, batch_idx: int) -> dict[str, list]:
        """Per request (shard padding dropped): ``candidate_ids`` and the stage's ``scores``."""
        scores = self(batch)
        kept = batch.real_requests().nonzero().squeeze(1).tolist()
        return {
            "request_id": batch.request_id[kept].tolist(),
            "candidate_ids": [batch.cand_ids[i][batch.cand_mask[i]].tolist() for i in kept],
            "scores": [scores[i][batch.cand_mask[i]].tolist() for i in kept],
        }

    def teacher_selection(self, batch: RequestBatch) -> Optional[Tensor]:
        if self.teacher is None:
            return None
        teacher = self.teacher
        if next(teacher.parameters()).device != batch.bids.device:  # set up before the module moved
            teacher.to(batch.bids.device)
        with torch.no_grad():
            ctr = torch.sigmoid(teacher(batch))
        top = self.teacher_top or self.num_slots
        if top is None:
            raise ValueError("teacher_top is None and num_slots is unknown: set teacher_top")
        return downstream_selection(ctr, batch.bids if self.teacher_by_bid else None, batch.cand_mask, top)

    def targets(self, batch: RequestBatch, *, use_teacher: bool) -> tuple[Tensor, Tensor]:
        """(targets, samples) of this stage for ``batch`` (:mod:`egakit.baselines.relabel`)."""
        selected = self.teacher_selection(batch) if use_teacher else None
        outcome = FunnelOutcome.from_logs(batch.cand_mask, batch.labels, batch.label_mask, batch.exposed_slot, selected)
        if self.fs_ltr:
            return full_stage_targets(self.stage, outcome, self.labels_scheme)
        return stage_local_targets(self.stage, outcome)

    def loss(self, scores: Tensor, targets: Tensor, samples: Tensor) -> Tensor:
        return weighted_bce(scores, targets, samples)

    def training_step(self, batch: RequestBatch, batch_idx: int) -> Tensor:
        scores = self(batch)
        targets, samples = self.targets(batch, use_teacher=True)
        loss = self.loss(scores, targets, samples)
        self.log("train/loss", loss, batch_size=batch.batch_size, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: RequestBatch, prefix: str) -> None:
        real = batch.label_mask.any(dim=1)  # padded repeats of the last shard carry no labels
        scores = self(batch)
        targets, samples = self.targets(batch, use_teacher=False)
        samples = samples & real.unsqueeze(1)
        b = int(real.sum())
        self.log(f"{prefix}/loss", self.loss(scores, targets, samples), batch_size=max(b, 1), sync_dist=True, prog_bar=True)
        metrics = self.metrics[prefix]
        relevant = batch.labels * batch.label_mask
        rows = real.nonzero().squeeze(1)
        if b:
            metrics["recall"].update(scores[rows], relevant[rows], batch.cand_mask[rows])
        self.log(f"{prefix}/recall@{self.recall_k}", metrics["recall"], batch_size=max(b, 1))
        if "auc" in metrics:
            labelled = batch.label_mask & real.unsqueeze(1)
            metrics["auc"].update(torch.sigmoid(scores), batch.labels, labelled)
            self.log(f"{prefix}/auc", metrics["auc"], batch_size=max(b, 1), prog_bar=True)

    def validation_step(self, batch: RequestBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: RequestBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class SASRecModule(BaselineStageModule):
    """Recall stage (SASRec). ``loss``: ``"softmax"`` (sampled softmax over the request's
    candidates, temperature ``temperature``) or ``"bce"``; other args as
    :class:`BaselineStageModule`."""

    stage = "recall"

    def __init__(
        self,
        model: Optional[SASRecConfig] = None,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fs_ltr: bool = False,
        click_target: float = 1.0,
        pass_target: float = 1.0,
        negative_target: float = 0.0,
        teacher_ckpt: Optional[str] = None,
        teacher_top: Optional[int] = None,
        teacher_by_bid: bool = True,
        recall_k: int = DEFAULT_RECALL_K,
        loss: Literal["softmax", "bce"] = "softmax",
        temperature: float = 1.0,
    ) -> None:
        super().__init__(
            model or SASRecConfig(), vocab_sizes, num_slots, cross_vocab_sizes, lr, weight_decay, fs_ltr,
            click_target, pass_target, negative_target, teacher_ckpt, teacher_top, teacher_by_bid, recall_k,
        )
        if loss not in ("softmax", "bce"):
            raise ValueError(f"loss must be 'softmax' or 'bce', got {loss!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.loss_kind = loss
        self.temperature = temperature
        self.save_hyperparameters()

    def loss(self, scores: Tensor, targets: Tensor, samples: Tensor) -> Tensor:
        if self.loss_kind == "softmax":
            return sampled_softmax(scores, targets, samples, self.temperature)
        return weighted_bce(scores, targets, samples)


class DSSMModule(BaselineStageModule):
    """Pre-rank stage (DSSM two towers), BCE; args as :class:`BaselineStageModule`."""

    stage = "prerank"

    def __init__(
        self,
        model: Optional[DSSMConfig] = None,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fs_ltr: bool = False,
        click_target: float = 1.0,
        pass_target: float = 1.0,
        negative_target: float = 0.0,
        teacher_ckpt: Optional[str] = None,
        teacher_top: Optional[int] = None,
        teacher_by_bid: bool = True,
        recall_k: int = DEFAULT_RECALL_K,
    ) -> None:
        super().__init__(
            model or DSSMConfig(), vocab_sizes, num_slots, cross_vocab_sizes, lr, weight_decay, fs_ltr,
            click_target, pass_target, negative_target, teacher_ckpt, teacher_top, teacher_by_bid, recall_k,
        )
        self.save_hyperparameters()


class DINModule(BaselineStageModule):
    """Rank stage (DIN), BCE; ``model.use_cross_features`` needs ``data.init_args.cross_features``;
    args as :class:`BaselineStageModule`."""

    stage = "rank"

    def __init__(
        self,
        model: Optional[DINConfig] = None,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fs_ltr: bool = False,
        click_target: float = 1.0,
        pass_target: float = 1.0,
        negative_target: float = 0.0,
        teacher_ckpt: Optional[str] = None,
        teacher_top: Optional[int] = None,
        teacher_by_bid: bool = True,
        recall_k: int = DEFAULT_RECALL_K,
    ) -> None:
        super().__init__(
            model or DINConfig(), vocab_sizes, num_slots, cross_vocab_sizes, lr, weight_decay, fs_ltr,
            click_target, pass_target, negative_target, teacher_ckpt, teacher_top, teacher_by_bid, recall_k,
        )
        self.save_hyperparameters()


__all__ = ["BaselineStageModule", "DINModule", "DSSMModule", "SASRecModule"]
