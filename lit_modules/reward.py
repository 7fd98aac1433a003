"""Phase 2, the reward model (V1 §4.2, docs/design.md §5): the permutation-aware evaluator, BCE of Eq. 21.

The evaluator (Eq. 18) scores the K exposed ads in the order they were shown
(``RequestBatch.exposed_index``) against their clicks. The paper freezes "the modules before
RecFormer"; docs/design.md §5 freezes RecFormer too (with the embedding and the CTR head), in eval mode, so
the encoder runs without gradients here. The encoder sees the request's candidates as the data
module serves them (``train_mode="train"``: K exposed + N_s sampled, as in pre-training).

Validation / test log ``loss`` (Eq. 21), ``auc`` of q over the exposed ads, ``dev`` =
|1 − Σq / Σclicks| (calibration) and, with the oracle, ``true_dev`` = |1 − Σq / Σ true CTR| of the
exposed lists (how well the reward model tracks the truth RLAF is judged by).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from egakit.auction.mechanism import index_batch
from egakit.batch import RequestBatch
from egakit.checkpoint import ENCODER, EVALUATOR
from egakit.metrics import AUC, Deviation
from egakit.model.config import EGAV1Config
from egakit.training.losses import reward_model_loss
from egakit.training.lr_schedule import LRSchedule
from egakit.lit.base import EGAV1Module

STAGES = ("val", "test")


class RewardModule(EGAV1Module):
    """Evaluator on the exposed lists, Eq. 21 (see the module docstring).

    Args (besides :class:`~egakit.lit.base.EGAV1Module`'s):
        loss_reduction: ``"label"`` or ``"request"`` (:mod:`egakit.training.losses`).
        oracle_metrics: also compare q with the world's true CTR of the exposed lists.
    """

    phase = "reward"
    trainable = EVALUATOR
    required = ENCODER

    def __init__(
        self,
        model: EGAV1Config,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        lr: float = 1e-3,
        init_from: Optional[str] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        loss_reduction: Literal["label", "request"] = "label",
        oracle_metrics: bool = True,
        lr_schedule: Optional[LRSchedule] = None,
    ) -> None:
        super().__init__(model, vocab_sizes, num_slots, lr, init_from, cross_vocab_sizes, lr_schedule)
        self.loss_reduction = loss_reduction
        self.oracle_metrics = oracle_metrics
        self.metrics = nn.ModuleDict(
            {stage: nn.ModuleDict({"auc": AUC(), "dev": Deviation(), "true_dev": Deviation()}) for stage in STAGES}
        )

    def _slot_logits(self, batch: RequestBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluator logits (B, K) of the exposed lists in shown order, and their label mask."""
        with torch.no_grad():  # frozen encoder
            enc = self.model.encode(batch)
        logits = self.model.evaluate_logits(batch, batch.exposed_index, encoding=enc)
        return logits, batch.label_mask.gather(1, batch.exposed_index)

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        logits, slot_mask = self._slot_logits(batch)
        loss = reward_model_loss(logits, batch.exposed_clicks, slot_mask, self.loss_reduction)
        self.log_scalars("train", {"loss": loss}, batch_size=batch.batch_size, on_step=True)
        return loss

    def _evaluate(self, batch: RequestBatch, stage: str) -> torch.Tensor:
        logits, slot_mask = self._slot_logits(batch)
        loss = reward_model_loss(logits, batch.exposed_clicks, slot_mask, self.loss_reduction)
        q = torch.sigmoid(logits)
        metrics = self.metrics[stage]
        metrics["auc"].update(q, batch.exposed_clicks, slot_mask)
        metrics["dev"].update(q, batch.exposed_clicks, slot_mask)
        self.log_scalars(stage, {"loss": loss}, batch_size=batch.batch_size)
        self.log(f"{stage}/auc", metrics["auc"], on_epoch=True, prog_bar=True)
        self.log(f"{stage}/dev", metrics["dev"], on_epoch=True)
        oracle = self.oracle() if self.oracle_metrics else None
        real = self.real_requests(batch)
        if oracle is not None and bool(real.any()):
            rows = real.nonzero().squeeze(1)
            shown = batch.cand_ids[rows].gather(1, batch.exposed_index[rows])
            truth = oracle.slot_ctr(index_batch(batch, rows), shown)
            metrics["true_dev"].update(q[rows], truth)
            self.log(f"{stage}/true_dev", metrics["true_dev"], on_epoch=True)
        return loss

    def validation_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")
