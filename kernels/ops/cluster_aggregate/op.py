"""Dispatch and ``torch.library`` registration of :func:`cluster_aggregate` (FLOP formulas:
:mod:`.flops`, the autograd context shared with the Triton ops: :mod:`.autograd`).

* :func:`cluster_aggregate` — the public entry point: ``backend="auto" | "triton" | "torch"``
  (see :mod:`egakit.kernels._backend`).
* :func:`cluster_aggregate_torch` — the chunked torch path (:mod:`.chunked`) as the op
  ``torch.ops.ega.cluster_aggregate`` with its backward op ``..._backward``.
* :func:`cluster_aggregate_triton` — the Triton path with explicit tiling. Its ops
  (``torch.ops.ega.cluster_aggregate_triton`` / ``..._triton_backward``, :mod:`.triton_op`) are
  registered on first use, when Triton is imported: importing this module needs torch alone.

Every op has autograd, a fake (meta) implementation and a FLOP formula, so ``torch.compile`` and
``FlopCounterMode`` see it as one op.

FLOPs (matmul FLOPs over the N axis, counted on the padded N, as torch's own attention formulas;
the exponentials, the rescaling and the O(N_c·d_h) terms such as D_c are not counted)::

    forward  = 2·B·H·N·N_c·d_h  (logits)  + 3 · 2·B·H·N·N_c·d_h  (A_q, A_k, A_v)
             = 8·B·H·N·N_c·d_h
    backward = 2·BHN·N_c·d_h  (recompute logits)  + 3 · 2·BHN·N_c·d_h  (dx = P dA_x)
             + 3 · 2·BHN·N_c·d_h  (dP = Σ_x x dA_xᵀ)  + 2·BHN·N_c·d_h  (dk += dl C / √d_h)
             + 2·BHN·N_c·d_h  (dC += dlᵀ k / √d_h)
             = 18·B·H·N·N_c·d_h
"""
from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..._backend import require_triton, resolve_backend
from .chunked import chunked_backward, chunked_forward, default_chunk_rows
from .autograd import incoming_grads, setup_context
from .contract import accumulation_dtype, check_inputs
from .flops import backward_flop_formula, cluster_aggregate_backward_flops, cluster_aggregate_flops, forward_flop_formula

__all__ = [
    "cluster_aggregate",
    "cluster_aggregate_backward_flops",
    "cluster_aggregate_flops",
    "cluster_aggregate_torch",
    "cluster_aggregate_triton",
]


# ----------------------------------------------------------------------------------------------
# torch.library registration of the torch path
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op("ega::cluster_aggregate", mutates_args=())
def _torch_op(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, chunk_rows: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Torch forward as one op: (A_q, A_k, A_v) (B, H, N_c, d_h) and the LSE (B, H, N_c)."""
    return chunked_forward(q, k, v, centroids, mask, chunk_rows)


@torch.library.custom_op("ega::cluster_aggregate_backward", mutates_args=())
def _torch_backward_op(
    grad_a_q: Tensor, grad_a_k: Tensor, grad_a_v: Tensor,
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor,
    a_q: Tensor, a_k: Tensor, a_v: Tensor, log_sum_exp: Tensor, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Torch backward as one op: dq, dk, dv (B, H, N, d_h) and dC (H, N_c, d_h)."""
    return chunked_backward(
        grad_a_q, grad_a_k, grad_a_v, q, k, v, centroids, mask, a_q, a_k, a_v, log_sum_exp, chunk_rows
    )


def _forward_fake(q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *tiling: int):
    batch, heads, _, head_dim = q.shape
    out_shape = (batch, heads, centroids.shape[1], head_dim)
    lse = q.new_empty(out_shape[:3], dtype=accumulation_dtype(q.dtype))
    return q.new_empty(out_shape), k.new_empty(out_shape), v.new_empty(out_shape), lse


def _backward_fake(grad_a_q, grad_a_k, grad_a_v, q, k, v, centroids, mask, *rest):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(centroids)


_torch_op.register_fake(_forward_fake)
_torch_backward_op.register_fake(_backward_fake)


def _torch_autograd_backward(ctx, grad_a_q, grad_a_k, grad_a_v, _grad_lse):
    grads = incoming_grads(ctx, grad_a_q, grad_a_k, grad_a_v)
    dq, dk, dv, dc = _torch_backward_op(*grads, *ctx.saved_tensors, *ctx.tiling)
    return dq, dk, dv, dc, None, None


_torch_op.register_autograd(_torch_autograd_backward, setup_context=setup_context)


register_flop_formula(torch.ops.ega.cluster_aggregate)(forward_flop_formula)
register_flop_formula(torch.ops.ega.cluster_aggregate_backward)(backward_flop_formula)


# ----------------------------------------------------------------------------------------------
# The two paths and the dispatch
# ----------------------------------------------------------------------------------------------
def cluster_aggregate_torch(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *, chunk_rows: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The chunked torch path of :func:`cluster_aggregate` (EGA-V1 Eq. 11) — the CPU production path.

    Args:
        q, k, v: (B, H, N, d_h). centroids: (H, N_c, d_h), same dtype. mask: (B, N) bool.
        chunk_rows: candidates per chunk; default keeps one (B, H, rows, N_c) chunk near
            ``chunked.CHUNK_ELEMENTS`` logits.

    Returns:
        (A_q, A_k, A_v), each (B, H, N_c, d_h) in the input dtype.

    Memory is linear in N: the forward streams over N with an online per-centroid max / sum-exp;
    the backward (``torch.ops.ega.cluster_aggregate_backward``) recomputes P chunk by chunk from the
    saved per-centroid log-sum-exp, so at most one chunk of N × N_c temporaries lives at a time.
    """
    check_inputs(q, k, v, centroids, mask)
    return _run_torch(q, k, v, centroids, mask, chunk_rows)


def _run_torch(q, k, v, centroids, mask, chunk_rows: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """The torch op on validated inputs (chunk_rows None = the default chunk)."""
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(q.shape[0], q.shape[1], centroids.shape[1])
    if chunk_rows < 1:
        raise ValueError(f"cluster_aggregate_torch: chunk_rows must be >= 1, got {chunk_rows}")
    a_q, a_k, a_v, _ = _torch_op(q, k, v, centroids, mask, chunk_rows)
    return a_q, a_k, a_v


def _triton_module() -> ModuleType:
    """:mod:`.triton_op`, imported (and its ops registered) on first use of the Triton path."""
    require_triton("cluster_aggregate")
    from . import triton_op

    return triton_op


def cluster_aggregate_triton(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *,
    block_n: int = 0, split_blocks: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton path of :func:`cluster_aggregate` with explicit tiling (0 = automatic):
    ``block_n`` rows per block, ``split_blocks`` blocks per program along N. Needs CUDA tensors,
    or ``TRITON_INTERPRET=1`` set before the first Triton call (Triton's CPU interpreter)."""
    check_inputs(q, k, v, centroids, mask)
    resolve_backend("triton", q, k, v, centroids, mask)
    return _triton_module().run_triton(q, k, v, centroids, mask, block_n, split_blocks)


def cluster_aggregate(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *, backend: str = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """Cluster-attention surrogate aggregation (EGA-V1 Eq. 11 as resolved in docs/design.md §3.1).

    ``P`` = softmax over the valid candidates n of ``k Cᵀ / √d_h`` (each centroid's column sums
    to 1 over N), and ``A_x = Pᵀ x`` for x = q, k, v.

    Args:
        q, k, v: (B, H, N, d_h), float16 / bfloat16 / float32 (float64 on the torch path).
        centroids: (H, N_c, d_h), the learnable cluster centroids, same dtype as q.
        mask: (B, N) bool, True for valid candidates. A row without any gives zeros.
        backend: "auto" (Triton when every tensor is on CUDA and Triton is installed, else
            torch), "triton" or "torch"; see :mod:`egakit.kernels._backend`.

    Returns:
        (A_q, A_k, A_v), each (B, H, N_c, d_h) in the input dtype; differentiable w.r.t.
        q, k, v and centroids.
    """
    check_inputs(q, k, v, centroids, mask)
    if resolve_backend(backend, q, k, v, centroids, mask) == "triton":
        return _triton_module().run_triton(q, k, v, centroids, mask, 0, 0)
    return _run_torch(q, k, v, centroids, mask, chunk_rows=None)
