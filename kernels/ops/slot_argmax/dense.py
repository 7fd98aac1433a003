"""The dense reference of :func:`slot_argmax`: the plain definition (EGA-V1 Eq. 17), by autograd.

Every score s[b, n, k] is materialised at once, the greedy is K masked argmaxes and the gradient
comes from autograd through the K steps. It is the yardstick of the tests and the baseline of the
benchmarks, not a production path (that is :func:`egakit.kernels.slot_argmax_torch` on CPU, with
an analytic backward, and the Triton kernels on CUDA).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .contract import accumulation_dtype, check_capacity, check_inputs, check_seed
from .gumbel import gumbel_noise


def slot_argmax_dense(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, *, sample_seed: Optional[int] = None
) -> tuple[Tensor, Tensor]:
    """Greedy masked slot-wise argmax with sequential log-probabilities, written as defined.

    Args:
        h: (B, N, d); t: (B, K, d); bias: (B, N); mask: (B, N) bool (True = valid).
        sample_seed: None (greedy) or an int: the keys are s + :func:`gumbel_noise`.

    Returns:
        idx (B, K) int64 with y_k = argmax over R_k of the key (ties → lower n); logz (B, K) in
        h's dtype, logz_k = s[y_k, k] − logsumexp_{n ∈ R_k} s[n, k]; differentiable w.r.t. h, t
        and bias by autograd.
    """
    check_inputs(h, t, bias, mask)
    seed = check_seed(sample_seed)
    batch, n, _ = h.shape
    slots = t.shape[1]
    check_capacity(mask, slots)
    acc = accumulation_dtype(h.dtype)
    scores = torch.einsum("bnd,bkd->bkn", h.to(acc), t.to(acc)) + bias.to(acc)[:, None, :]  # (B, K, N)
    keys = scores.detach()
    if seed is not None:
        keys = keys + gumbel_noise(seed, batch, n, slots, device=h.device).transpose(1, 2).to(acc)
    remaining = mask.clone()
    picks, logzs = [], []
    for k in range(slots):
        score_k = scores[:, k].masked_fill(~remaining, float("-inf"))
        pick = keys[:, k].masked_fill(~remaining, float("-inf")).argmax(dim=1)  # first max: lower n
        logzs.append(score_k.gather(1, pick[:, None])[:, 0] - torch.logsumexp(score_k, dim=1))
        picks.append(pick)
        remaining = remaining.scatter(1, pick[:, None], False)
    return torch.stack(picks, 1), torch.stack(logzs, 1).to(h.dtype)
