"""The contract of :func:`cluster_aggregate` shared by every path: dtypes and input validation.

Shapes (EGA-V1 Eq. 11, docs/design.md §3.1)::

    q, k, v      : (B, H, N, d_h)   float16 / bfloat16 / float32 (float64: torch path only)
    centroids  C : (H, N_c, d_h)    same dtype as q
    mask         : (B, N) bool      True = valid candidate
"""
from __future__ import annotations

import torch
from torch import Tensor

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inputs(q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor) -> None:
    """Raise a TypeError / ValueError naming the offending argument (metadata only: no sync)."""
    named = {"q": q, "k": k, "v": v, "centroids": centroids, "mask": mask}
    for name, value in named.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"cluster_aggregate: {name} must be a torch.Tensor, got {type(value).__name__}")
    if q.dim() != 4:
        raise ValueError(f"cluster_aggregate: q must have shape (B, H, N, d_h), got {tuple(q.shape)}")
    batch, heads, n, head_dim = q.shape
    for name, x in (("k", k), ("v", v)):
        if x.shape != q.shape:
            raise ValueError(
                f"cluster_aggregate: {name} must have the shape of q (B, H, N, d_h) = "
                f"{tuple(q.shape)}, got {tuple(x.shape)}"
            )
    if centroids.dim() != 3 or centroids.shape[0] != heads or centroids.shape[2] != head_dim:
        raise ValueError(
            f"cluster_aggregate: centroids must have shape (H, N_c, d_h) = ({heads}, N_c, {head_dim}), "
            f"got {tuple(centroids.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"cluster_aggregate: mask must be a bool tensor (True = valid), got {mask.dtype}")
    if tuple(mask.shape) != (batch, n):
        raise ValueError(f"cluster_aggregate: mask must have shape (B, N) = ({batch}, {n}), got {tuple(mask.shape)}")
    if min(batch, heads, head_dim, centroids.shape[1]) < 1:
        raise ValueError(
            f"cluster_aggregate: B, H, d_h and N_c must be positive, got q {tuple(q.shape)}, "
            f"centroids {tuple(centroids.shape)}"
        )
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"cluster_aggregate: q must be one of {SUPPORTED_DTYPES}, got {q.dtype}")
    for name, x in (("k", k), ("v", v), ("centroids", centroids)):
        if x.dtype != q.dtype:
            raise TypeError(f"cluster_aggregate: {name} must have the dtype of q ({q.dtype}), got {x.dtype}")
    for name, x in named.items():
        if x.device != q.device:
            raise ValueError(f"cluster_aggregate: {name} is on {x.device} but q is on {q.device}")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half / bfloat16 / float32 inputs, float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)
