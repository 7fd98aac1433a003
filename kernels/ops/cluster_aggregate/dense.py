"""The dense reference of :func:`cluster_aggregate`: the plain definition (EGA-V1 Eq. 11).

It materialises ``P`` (B, H, N, N_c), so its memory is O(N · N_c): it is the yardstick of the
tests and the "naive" baseline of the benchmarks, not a production path (that is
:func:`egakit.kernels.cluster_aggregate_torch` on CPU and the Triton kernels on CUDA).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .contract import check_inputs


def cluster_aggregate_dense(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``A_x = Pᵀ x`` for x = q, k, v with ``P`` = softmax over the valid n of ``k Cᵀ / √d_h``.

    Args:
        q, k, v: (B, H, N, d_h). centroids: (H, N_c, d_h), same dtype. mask: (B, N) bool.

    Returns:
        (A_q, A_k, A_v), each (B, H, N_c, d_h) in the input dtype (computed in it, no upcast);
        zeros for a row without valid candidates. Differentiable by autograd.
    """
    check_inputs(q, k, v, centroids, mask)
    logits = torch.einsum("bhnd,hcd->bhnc", k, centroids) / math.sqrt(q.shape[-1])
    logits = logits.masked_fill(~mask[:, None, :, None], float("-inf"))
    shift = logits.amax(dim=2, keepdim=True)
    shift = shift.masked_fill(shift == float("-inf"), 0.0)
    weights = torch.exp(logits - shift)
    total = weights.sum(dim=2, keepdim=True)
    probs = weights / torch.where(total > 0, total, torch.ones_like(total))
    return tuple(torch.einsum("bhnc,bhnd->bhcd", probs, x) for x in (q, k, v))
