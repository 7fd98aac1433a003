"""Cluster-attention surrogate aggregation ``A_x = Pᵀ x`` (EGA-V1 Eq. 11, docs/design.md §3.1 and §4).

Contract (identical in every path)::

    q, k, v      : (B, H, N, d_h)   float16 / bfloat16 / float32 (float64: torch path only)
    centroids  C : (H, N_c, d_h)    same dtype as q
    mask         : (B, N) bool      True = valid candidate
    logits[b, h, n, c] = k[b, h, n] · C[h, c] / √d_h
    P[b, h, :, c]      = softmax over the *valid* n of logits[b, h, :, c]   (columns sum to 1)
    A_x[b, h, c]       = Σ_n P[b, h, n, c] · x[b, h, n]          for x in (q, k, v)
    returns (A_q, A_k, A_v), each (B, H, N_c, d_h) in the input dtype.

A row ``b`` with no valid candidate gives zeros (and zero gradients); masked candidates get zero
gradient and never influence the outputs, so the outputs are invariant to extra padding and to
permuting the candidates. Accumulation is in float32 (float64 for float64 inputs).

Files, one job each:

* :mod:`.contract` — dtypes and input validation;
* :mod:`.dense` — :func:`cluster_aggregate_dense`, the plain definition (materialises P; tests
  and benchmarks);
* :mod:`.chunked` — the chunked torch path (the CPU production path, memory-linear in N);
* :mod:`.triton_kernels` — the Triton kernels; :mod:`.triton_op` — their launch tuning and
  ``torch.library`` ops (both imported only when the Triton path runs);
* :mod:`.op` — the dispatch :func:`cluster_aggregate`, the torch op and the FLOP formulas.
"""
from .dense import cluster_aggregate_dense
from .op import (
    cluster_aggregate,
    cluster_aggregate_backward_flops,
    cluster_aggregate_flops,
    cluster_aggregate_torch,
    cluster_aggregate_triton,
)

__all__ = [
    "cluster_aggregate",
    "cluster_aggregate_backward_flops",
    "cluster_aggregate_dense",
    "cluster_aggregate_flops",
    "cluster_aggregate_torch",
    "cluster_aggregate_triton",
]
