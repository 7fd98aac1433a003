"""Click losses of pre-training (V1 Eq. 20) and reward-model training (V1 Eq. 21).

    L_pt = −1/|D| Σ_κ Σ_{i=1}^{K+N_s} [ζ_i log q̂_i + (1 − ζ_i) log(1 − q̂_i)]      (Eq. 20)
    L_rm = −1/|D| Σ_κ Σ_{i=1}^{K}     [ζ_i log q_i + (1 − ζ_i) log(1 − q_i)]        (Eq. 21)

Both are a binary cross-entropy over the entries that carry a label. In this project a candidate
carries a label when ``RequestBatch.label_mask`` says so (the K exposed ads and the
platform-labelled unexposed ones, V1 §4.1); popularity-sampled candidates without a platform
label are set context for the set-aware encoder, not negatives. Padding requests of an
evaluation loader have no label at all and so contribute nothing.

Two normalisations (``reduction``):

- ``"request"``: Eq. 20 / 21 literally — the sum over a request's labelled entries, averaged
  over the requests that have at least one label (|D|);
- ``"label"``: the mean over labelled entries (Eq. 20 / 21 divided by the mean number of labels
  per request). With Adam the two give the same updates up to that (nearly constant) factor;
  ``"label"`` keeps the logged loss on the per-click scale of the AUC/log-loss literature.

Losses are computed from **logits** (``binary_cross_entropy_with_logits``), the stable form.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["request", "label"]
REDUCTIONS = ("request", "label")


def masked_bce_with_logits(logits: Tensor, target: Tensor, mask: Tensor, reduction: Reduction = "label") -> Tensor:
    """Binary cross-entropy over the entries where ``mask`` is True.

    logits, target, mask: (B, M) — M candidates (Eq. 20) or K slots (Eq. 21); ``target`` in {0, 1}
    (any value > 0 counts as a click). Returns a scalar; 0 (still attached to the graph) when no
    entry is labelled, never NaN.
    """
    if logits.shape != target.shape or logits.shape != mask.shape:
        raise ValueError(
            f"logits, target and mask must have one shape, got {tuple(logits.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be torch.bool, got {mask.dtype}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    # Padding logits may be anything (even ±inf from a masked layer): zero them before the loss.
    safe = torch.where(mask, logits, torch.zeros_like(logits))
    per_entry = F.binary_cross_entropy_with_logits(safe, (target > 0).to(logits.dtype), reduction="none")
    return reduce_masked(per_entry, mask, reduction)


def reduce_masked(per_entry: Tensor, mask: Tensor, reduction: Reduction) -> Tensor:
    """Sum of ``per_entry`` (B, M) where ``mask``, divided by the labelled entries (``"label"``)
    or by the requests with at least one (``"request"``); 0 when nothing is labelled."""
    total = (per_entry * mask).sum()
    count = mask.sum() if reduction == "label" else mask.any(dim=-1).sum()
    return total / count.clamp_min(1).to(total.dtype)


def pretrain_loss(ctr_logit: Tensor, labels: Tensor, label_mask: Tensor, reduction: Reduction = "label") -> Tensor:
    """Eq. 20: BCE of the set-aware q̂ (B, N) logits over the labelled candidates."""
    return masked_bce_with_logits(ctr_logit, labels, label_mask, reduction)


def reward_model_loss(
    slot_logits: Tensor, exposed_clicks: Tensor, slot_mask: Tensor, reduction: Reduction = "label"
) -> Tensor:
    """Eq. 21: BCE of the evaluator's permutation-aware q (B, K) logits on the exposed list, in the
    order it was shown, against its clicks; ``slot_mask`` (B, K) drops unlabelled (padding) lists."""
    return masked_bce_with_logits(slot_logits, exposed_clicks, slot_mask, reduction)
