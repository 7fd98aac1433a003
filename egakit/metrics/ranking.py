"""Ranking metrics of the pre-rank and rank stages (EGA-V1 §5.1.2): Recall@K and AUC."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC

from egakit.auction.position import top_ranked
from egakit.metrics._common import add_sum_state, as_mask, check_same_shape

DEFAULT_RECALL_K = 50


class RecallAtK(Metric):
    """Recall@k of a request, averaged over requests (pre-rank quality, §5.1.2).

    ``update(preds (B, N), target (B, N), mask (B, N) bool = all)``. The *relevant* ads of a
    request are its valid candidates with a positive label (``target > 0``: a click — exposed
    or platform-wide, §4.1). Per request, recall = |relevant ∩ top-k by ``preds`` among the
    valid candidates| / |relevant| (k capped at N); requests without a relevant ad are skipped.
    ``compute()`` is the mean over the counted requests (0 when none). Ties in ``preds`` go to
    the lower candidate index, like the auctions.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, k: int = DEFAULT_RECALL_K, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k = k
        add_sum_state(self, "recall_sum")
        add_sum_state(self, "requests")

    def update(self, preds: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> None:
        check_same_shape(preds=preds, target=target, mask=mask)
        if preds.dim() != 2:
            raise ValueError(f"preds must be (B, N), got {tuple(preds.shape)}")
        mask = as_mask(mask, preds)
        if not bool(torch.isfinite(preds[mask]).all()):
            raise ValueError("preds: non-finite score on a valid candidate")
        relevant = (target > 0) & mask
        scores = torch.where(mask, preds, torch.full_like(preds, float("-inf")))
        top, _ = top_ranked(scores, min(self.k, preds.shape[1]))
        hits = relevant.gather(1, top).sum(1)
        n_rel = relevant.sum(1)
        counted = n_rel > 0
        self.recall_sum += (hits[counted].double() / n_rel[counted].double()).sum()
        self.requests += counted.sum().double()

    def compute(self) -> Tensor:
        if self.requests == 0:
            return torch.zeros((), dtype=self.recall_sum.dtype, device=self.recall_sum.device)
        return self.recall_sum / self.requests


class AUC(BinaryAUROC):
    """Binary AUC over the masked, labelled candidates (rank quality, §5.1.2).

    ``update(preds, target, mask=None)``: any shapes, one AUC over all selected entries
    (a global AUC, not a per-request mean); ``target > 0`` is the positive class. It is
    torchmetrics' ``BinaryAUROC``: with ``thresholds=None`` (default) it keeps every
    prediction and is exact (ties count 1/2) — fine at this project's test-set sizes; an
    ``int`` gives a fixed-bin histogram with constant memory and binning error ~1/thresholds.
    Predictions outside [0, 1] go through a sigmoid first, which leaves AUC unchanged.
    """

    def __init__(self, thresholds: Optional[int] = None, **kwargs):
        super().__init__(thresholds=thresholds, **kwargs)

    def update(self, preds: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> None:  # type: ignore[override]
        check_same_shape(preds=preds, target=target, mask=mask)
        if mask is not None:
            preds, target = preds[as_mask(mask, preds)], target[mask]
        super().update(preds.reshape(-1), (target.reshape(-1) > 0).long())
