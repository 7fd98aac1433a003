"""Fused Triton kernels for EGA (SPEC §4), usable from any PyTorch model.

- :func:`cluster_aggregate` — cluster-attention surrogate aggregation ``A_x = Pᵀ x`` (Eq. 11),
  ``P`` = softmax over the valid candidates of ``k Cᵀ / √d_h``.
- :func:`slot_argmax` — greedy masked slot-wise argmax with the sequential log-probabilities
  (Eq. 17).

Each dispatches to a Triton kernel on CUDA and to a memory-linear torch reference elsewhere, is
differentiable, and is registered with ``torch.library`` (``torch.ops.ega.*``) with a FLOP formula.
This package imports torch and triton only.
"""
from ._backend import BACKENDS, resolve_backend, triton_interpreting
from .cluster_aggregate import cluster_aggregate, cluster_aggregate_reference
from .slot_argmax import slot_argmax, slot_argmax_reference

__all__ = [
    "BACKENDS",
    "cluster_aggregate",
    "cluster_aggregate_reference",
    "resolve_backend",
    "slot_argmax",
    "slot_argmax_reference",
    "triton_interpreting",
]
