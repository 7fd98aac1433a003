"""Observation-aware pre-training labels: a learned click-observation rate per label source.

The logs mix labels of different *observation* processes (docs/design.md §1):

- an ad exposed in slot k is clicked with posbias(k) · (list-dependent CTR): lower slots are seen
  less, whatever the ad;
- a platform label of an unexposed ad is a slot-free click thinned by an observation rate.

Eq. 20 fits one q̂ to all of them with a plain BCE, so q̂ learns *where the label came from* —
exposed labels click ≈ 10× more often than platform labels in the small world, and the logging
policy decides which ads get exposed — instead of the ad's CTR. Ranked over a full candidate
set, that q̂ is close to chance on the truth (oracle AUC 0.53 where the true CTR reaches 0.78),
and a set-aware encoder has nothing set-level to learn.

The fix is the position-bias-aware factorisation of PAL (Guo et al., RecSys 2019) applied to
every label source s ∈ {slot 0, …, slot K−1, platform}:

    P(click_i | s) = β_s · q̂_i,        β_s = σ(w_s) ∈ (0, 1),   β_{slot 0} = 1 (anchor)

so q̂ is the CTR an ad would have in the top slot, which is what the generator's bid term, the
payment network and the metrics read, and the β_s absorb how each source observes clicks. With
β fixed to 1 everywhere this is exactly Eq. 20. The β_s live in the model
(:class:`~egakit.model.heads.ObservationRates`, trained with the encoder): inference uses q̂, and the
critical-bid payments read the slots' β as position effects (:mod:`egakit.model.critical_payment`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from egakit.training.losses import REDUCTIONS, Reduction, reduce_masked

#: ln 2: the switch point of the stable log(1 − eˣ) (Mächler 2012).
_LN2 = 0.6931471805599453


def log1mexp(x: Tensor) -> Tensor:
    """log(1 − eˣ) for x ≤ 0, accurate near 0 and for very negative x."""
    x = x.clamp_max(-torch.finfo(x.dtype).tiny)
    return torch.where(x > -_LN2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def label_source(exposed_slot: Tensor, K: int) -> Tensor:
    """Source index (B, N) int64: the exposed slot 0..K−1, or K for an unexposed (platform) label."""
    return torch.where(exposed_slot >= 0, exposed_slot, torch.full_like(exposed_slot, K))


def observed_click_bce(
    ctr_logit: Tensor, log_rate: Tensor, labels: Tensor, label_mask: Tensor, reduction: Reduction = "label"
) -> Tensor:
    """BCE of P(click) = e^{log_rate} · σ(ctr_logit) over the labelled entries (module doc).

    ctr_logit, log_rate, labels: (B, N) (log_rate ≤ 0, the entry's log β_s); label_mask (B, N)
    bool. ``reduction`` as :func:`egakit.training.losses.masked_bce_with_logits`; with
    log_rate ≡ 0 the value equals it (Eq. 20).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    safe = torch.where(label_mask, ctr_logit, torch.zeros_like(ctr_logit))
    log_p = F.logsigmoid(safe) + log_rate
    # log(1 − β σ(ℓ)); for β = 1 use the exact logsigmoid(−ℓ), which stays finite for large ℓ.
    log_not = torch.where(log_rate == 0, F.logsigmoid(-safe), log1mexp(log_p))
    clicked = (labels > 0).to(ctr_logit.dtype)
    per_entry = -(clicked * log_p + (1.0 - clicked) * log_not)
    return reduce_masked(per_entry, label_mask, reduction)


def observation_aware_loss(
    ctr_logit: Tensor,
    log_rates: Tensor,
    labels: Tensor,
    label_mask: Tensor,
    exposed_slot: Tensor,
    reduction: Reduction = "label",
) -> Tensor:
    """Observation-aware Eq. 20: ctr_logit, labels, label_mask, exposed_slot (B, N); log_rates
    (K + 1,) log β per source (slots 0..K−1, then platform; :meth:`ObservationRates.log_rates`)."""
    K = log_rates.shape[0] - 1
    return observed_click_bce(ctr_logit, log_rates[label_source(exposed_slot, K)], labels, label_mask, reduction)
