"""Losses of the cascade stages: BCE for the CTR stages, sampled softmax for recall.

Both take ``(scores (B, N), targets (B, N) in [0, 1], samples (B, N) bool)`` from
:mod:`egakit.baselines.relabel` and return a scalar that is 0 — still attached to the graph — when
a batch has nothing to learn from (no sample, or no positive for the softmax), so a step never
produces NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _zero(scores: Tensor) -> Tensor:
    return scores.sum() * 0.0


def weighted_bce(logits: Tensor, targets: Tensor, samples: Tensor) -> Tensor:
    """Mean binary cross-entropy with (soft) ``targets`` over the ``samples`` entries."""
    if not bool(samples.any()):
        return _zero(logits)
    return F.binary_cross_entropy_with_logits(logits[samples], targets[samples].to(logits.dtype))


def sampled_softmax(scores: Tensor, targets: Tensor, samples: Tensor, temperature: float = 1.0) -> Tensor:
    """Softmax cross-entropy of each request's candidates against its target distribution.

    For a request with positive mass, ``−Σ_i t_i log softmax(s / τ)_i / Σ_i t_i`` with the softmax
    over its ``samples`` (the positives and the request's other candidates as negatives, SASRec /
    YouTube-DNN style); requests without positive mass are skipped; mean over the rest.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = torch.where(samples, targets.to(scores.dtype), torch.zeros_like(scores))
    mass = t.sum(1)
    rows = mass > 0
    if not bool(rows.any()):
        return _zero(scores)
    logits = torch.where(samples, scores / temperature, torch.full_like(scores, float("-inf")))
    log_p = torch.log_softmax(logits[rows], dim=1)
    log_p = torch.where(samples[rows], log_p, torch.zeros_like(log_p))  # −inf × 0 would be NaN
    return (-(t[rows] * log_p).sum(1) / mass[rows]).mean()
