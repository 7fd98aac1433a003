"""Phase 1, pre-training (V1 §4.1, docs/design.md §5): RecFormer + CTR head on clicks, BCE of Eq. 20.

Data: the K exposed ads plus N_s popularity-sampled unexposed candidates per request
(``WorldDataModule(train_mode="train", neg_samples=N_s)``); the loss runs over the labelled ones
(exposed clicks and platform labels, ``label_mask``). With ``observation_bias`` (the default) the
BCE is observation-aware: each label source (exposure slot k, platform label) gets a learned
observation rate β_s and the loss fits P(click) = β_s · q̂ (:mod:`egakit.training.label_bias`:
why plain Eq. 20 learns the logging policy instead of the CTR); ``observation_bias: false`` is the
literal Eq. 20 for the encoder, and the rates β are then fitted on the side, against a detached
q̂ (``train/obs_fit_loss``), so that the critical-bid prices still get position effects learnt
from the logs rather than the rates' initial values.

Validation / test log: ``loss`` (Eq. 20 on the evaluation candidates), ``auc`` (egakit.metrics.AUC
over every labelled candidate), ``recall@k`` (candidates ranked by q̂ against the clicked ones;
meaningful in ``eval_mode="full"``), and — when the world's oracle is at hand and
``oracle_metrics`` — ``true_auc``: AUC of q̂ against clicks drawn from the true slot-free CTR of
every candidate (:meth:`~egakit.sim.oracle.Oracle.sampled_clicks`, free of the logging policy's
choice of what got labelled), and ``true_ectr_gsp`` / ``true_erpm_gsp``: the truth's eCTR (%) and
eRPM (‰) of GSP ranking by q̂·b with GSP prices (what the pre-trained model alone would earn as
the rank stage of a cascade).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from egakit.auction.mechanism import index_batch
from egakit.batch import RequestBatch
from egakit.checkpoint import ENCODER
from egakit.metrics import AUC, ExpectedCTR, ExpectedRPM, RecallAtK
from egakit.metrics.ranking import DEFAULT_RECALL_K
from egakit.model.config import EGAV1Config
from egakit.model.payment import gsp_allocation
from egakit.training.label_bias import observation_aware_loss
from egakit.training.losses import pretrain_loss
from egakit.training.lr_schedule import LRSchedule
from egakit.lit.base import EGAV1Module

STAGES = ("val", "test")
ORACLE_LABEL_SEED = 0  # the click stream of `true_auc` (seed 0 of `ega evaluate`'s oracle labels)


class PretrainModule(EGAV1Module):
    """RecFormer + heads, Eq. 20 (see the module docstring).

    Args (besides :class:`~egakit.lit.base.EGAV1Module`'s):
        loss_reduction: ``"label"`` (mean over labelled candidates) or ``"request"`` (Eq. 20's
            per-request sum averaged over requests); see :mod:`egakit.training.losses`.
        recall_k: k of Recall@k (V1 §5.1.2: 50).
        oracle_metrics: score the GSP-by-q̂ allocation with the world's oracle in val / test.
        prior_ctr: when training from scratch, start the CTR head's output bias at
            logit(prior_ctr), the labelled click rate of the training data (the "prior" init of
            Lin et al. 2017). Clicks are rare (≈1% of labels in the small world): from a bias of 0
            the first hundreds of steps only learn the base rate, and the features learn late.
            None keeps the default init.
        observation_bias: learn one click-observation rate per label source (slots 1..K−1,
            platform labels; slot 0 is the anchor, rate 1) and fit β_s · q̂ instead of q̂ (see the
            module docstring). False = Eq. 20 as printed for the encoder, β fitted on the
            detached q̂ only.
    """

    phase = "pretrain"
    trainable = ENCODER
    required = ()

    def __init__(
        self,
        model: EGAV1Config,
        vocab_sizes: Optional[dict[str, int]] = None,
        num_slots: Optional[int] = None,
        lr: float = 1e-3,
        init_from: Optional[str] = None,
        cross_vocab_sizes: Optional[list[int]] = None,
        loss_reduction: Literal["label", "request"] = "label",
        recall_k: int = DEFAULT_RECALL_K,
        oracle_metrics: bool = True,
        prior_ctr: Optional[float] = None,
        observation_bias: bool = True,
        lr_schedule: Optional[LRSchedule] = None,
    ) -> None:
        super().__init__(model, vocab_sizes, num_slots, lr, init_from, cross_vocab_sizes, lr_schedule)
        if prior_ctr is not None:  # restored weights (init_from, resume) overwrite this later
            self.model.ctr_head.set_prior(prior_ctr)
        if self.config.task_heads:
            raise ValueError(
                f"model.task_heads={self.config.task_heads}: the synthetic world logs clicks only, so extra "
                "task heads would have no labels to pre-train on"
            )
        self.loss_reduction = loss_reduction
        self.observation_bias = observation_bias
        self.oracle_metrics = oracle_metrics
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        "auc": AUC(),
                        "recall": RecallAtK(recall_k),
                        "true_auc": AUC(),
                        "true_ectr_gsp": ExpectedCTR(),
                        "true_erpm_gsp": ExpectedRPM(),
                    }
                )
                for stage in STAGES
            }
        )
        self.recall_k = recall_k

    def click_loss(self, ctr_logit: torch.Tensor, batch: RequestBatch) -> torch.Tensor:
        """Eq. 20 over the labelled candidates, observation-aware when ``observation_bias``."""
        if not self.observation_bias:
            return pretrain_loss(ctr_logit, batch.labels, batch.label_mask, self.loss_reduction)
        return self.observation_fit(ctr_logit, batch)

    def observation_fit(self, ctr_logit: torch.Tensor, batch: RequestBatch) -> torch.Tensor:
        """The observation-aware BCE of P(click | source) = β_source · σ(ctr_logit)."""
        log_rates = self.model.observation.log_rates()
        return observation_aware_loss(
            ctr_logit, log_rates, batch.labels, batch.label_mask, batch.exposed_slot, self.loss_reduction
        )

    def training_loss(self, batch: RequestBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and the scalars to log. Without ``observation_bias`` the rates β
        are fitted against the detached q̂: the encoder's gradient is Eq. 20's alone."""
        enc = self.model.encode(batch)
        loss = self.click_loss(enc.ctr_logit, batch)
        scalars = {"loss": loss}
        if not self.observation_bias:
            side = self.observation_fit(enc.ctr_logit.detach(), batch)
            scalars["obs_fit_loss"] = side
            loss = loss + side
        rates = self.model.observation.rates().detach()
        scalars.update({f"obs_rate_slot{k}": rates[k] for k in range(1, self.config.K)})
        scalars["obs_rate_platform"] = rates[-1]
        return loss, scalars

    def training_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        loss, scalars = self.training_loss(batch)
        self.log_scalars("train", scalars, batch_size=batch.batch_size, on_step=True)
        return loss

    def _evaluate(self, batch: RequestBatch, stage: str) -> torch.Tensor:
        enc = self.model.encode(batch)
        loss = self.click_loss(enc.ctr_logit, batch)
        metrics = self.metrics[stage]
        metrics["auc"].update(enc.q_hat, batch.labels, batch.label_mask)
        metrics["recall"].update(enc.q_hat, batch.labels, batch.cand_mask)
        self.log_scalars(stage, {"loss": loss}, batch_size=batch.batch_size)
        self.log(f"{stage}/auc", metrics["auc"], on_epoch=True, prog_bar=True)
        self.log(f"{stage}/recall@{self.recall_k}", metrics["recall"], on_epoch=True)
        oracle = self.oracle() if self.oracle_metrics else None
        real = self.real_requests(batch)
        if oracle is not None and bool(real.any()):
            rows = real.nonzero().squeeze(1)
            real_batch = index_batch(batch, rows)
            q_hat = enc.q_hat[rows]
            metrics["true_auc"].update(q_hat, oracle.sampled_clicks(real_batch, ORACLE_LABEL_SEED), real_batch.cand_mask)
            self.log(f"{stage}/true_auc", metrics["true_auc"], on_epoch=True)
            idx, _, prices = gsp_allocation(q_hat, real_batch.bids, real_batch.cand_mask, self.config.K)
            winners = real_batch.cand_ids.gather(1, idx)
            truth = oracle.outcome(real_batch, winners, prices)
            metrics["true_ectr_gsp"].update(truth.ctr)
            metrics["true_erpm_gsp"].update(truth.ctr, truth.prices)
            self.log(f"{stage}/true_ectr_gsp", metrics["true_ectr_gsp"], on_epoch=True)
            self.log(f"{stage}/true_erpm_gsp", metrics["true_erpm_gsp"], on_epoch=True)
        return loss

    def validation_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: RequestBatch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")
