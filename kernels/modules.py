"""Thin ``nn.Module`` wrappers of the kernels (as Liger-Kernel offers its functions as modules).

They hold the configuration (the backend; for :class:`ClusterAggregate` the learnable centroids)
and call :func:`~egakit.kernels.cluster_aggregate` / :func:`~egakit.kernels.slot_argmax` in
``forward``; the maths, shapes and gradients are the functions'.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ._backend import BACKENDS
from .ops.cluster_aggregate import cluster_aggregate
from .ops.slot_argmax import slot_argmax

__all__ = ["ClusterAggregate", "SlotArgmax"]


def _checked_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


class ClusterAggregate(nn.Module):
    """Cluster-attention surrogate aggregation with learnable centroids (EGA-V1 Eq. 11).

    Args:
        heads: H. n_clusters: N_c. head_dim: d_h.
        backend: "auto", "triton" or "torch" (see :func:`egakit.kernels.cluster_aggregate`).
        device, dtype: of the centroids.

    ``forward(q, k, v, mask)`` with q, k, v (B, H, N, d_h) and mask (B, N) bool returns
    (A_q, A_k, A_v), each (B, H, N_c, d_h). The centroids C (H, N_c, d_h) start as N(0, 1) entries
    (so that k·C / √d_h has unit scale for unit-variance keys).
    """

    def __init__(self, heads: int, n_clusters: int, head_dim: int, *, backend: str = "auto",
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        if min(heads, n_clusters, head_dim) < 1:
            raise ValueError(
                f"ClusterAggregate: heads, n_clusters and head_dim must be positive, got "
                f"{heads}, {n_clusters}, {head_dim}"
            )
        self.backend = _checked_backend(backend)
        self.centroids = nn.Parameter(torch.empty(heads, n_clusters, head_dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.centroids)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return cluster_aggregate(q, k, v, self.centroids, mask, backend=self.backend)

    def extra_repr(self) -> str:
        heads, n_clusters, head_dim = self.centroids.shape
        return f"heads={heads}, n_clusters={n_clusters}, head_dim={head_dim}, backend={self.backend!r}"


class SlotArgmax(nn.Module):
    """Greedy (or seeded-sampled) K-slot allocation with sequential log-probabilities (EGA-V1 Eq. 17).

    Args:
        backend: "auto", "triton" or "torch" (see :func:`egakit.kernels.slot_argmax`).

    ``forward(h, t, bias, mask, sample_seed=None)`` with h (B, N, d), slot tokens t (B, K, d),
    bias (B, N) and mask (B, N) bool returns idx (B, K) int64 and logz (B, K). The module holds
    no parameters: the slot tokens belong to the model that owns it.
    """

    def __init__(self, *, backend: str = "auto") -> None:
        super().__init__()
        self.backend = _checked_backend(backend)

    def forward(self, h: Tensor, t: Tensor, bias: Tensor, mask: Tensor,
                sample_seed: Optional[int] = None) -> tuple[Tensor, Tensor]:
        return slot_argmax(h, t, bias, mask, sample_seed=sample_seed, backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"
