"""Fused kernels for EGA (docs/design.md §4), usable from any PyTorch model.

- :func:`cluster_aggregate` — cluster-attention surrogate aggregation ``A_x = Pᵀ x`` (EGA-V1
  Eq. 11), ``P`` = softmax over the valid candidates of ``k Cᵀ / √d_h``.
- :func:`slot_argmax` — greedy masked slot-wise argmax with the sequential log-probabilities
  (EGA-V1 Eq. 17).
- :class:`ClusterAggregate`, :class:`SlotArgmax` — the same as ``nn.Module``\\ s.

Each op is a package (``egakit.kernels.ops.cluster_aggregate``, ``egakit.kernels.ops.slot_argmax``) with
the dense reference (``*_dense``, the plain definition), the chunked torch path (``*_torch``, the
CPU production path, memory-linear in N), the Triton kernels and the dispatch. Each is
differentiable and registered with ``torch.library`` (``torch.ops.ega.*``) with a FLOP formula.

This package needs torch alone: triton is imported only when the Triton path runs (CUDA
tensors, or ``backend="triton"`` under ``TRITON_INTERPRET=1``), and nothing of ``egakit`` outside
this package is imported.
"""
from ._backend import BACKENDS, resolve_backend, triton_available, triton_interpreting
from .ops.cluster_aggregate import (
    cluster_aggregate,
    cluster_aggregate_backward_flops,
    cluster_aggregate_dense,
    cluster_aggregate_flops,
    cluster_aggregate_torch,
)
from .modules import ClusterAggregate, SlotArgmax
from .ops.slot_argmax import (
    gumbel_noise,
    slot_argmax,
    slot_argmax_backward_flops,
    slot_argmax_dense,
    slot_argmax_flops,
    slot_argmax_torch,
)

__all__ = [
    "BACKENDS",
    "ClusterAggregate",
    "SlotArgmax",
    "cluster_aggregate",
    "cluster_aggregate_backward_flops",
    "cluster_aggregate_dense",
    "cluster_aggregate_flops",
    "cluster_aggregate_torch",
    "gumbel_noise",
    "resolve_backend",
    "slot_argmax",
    "slot_argmax_backward_flops",
    "slot_argmax_dense",
    "slot_argmax_flops",
    "slot_argmax_torch",
    "triton_available",
    "triton_interpreting",
]
