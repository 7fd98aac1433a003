"""Dispatch and ``torch.library`` registration of :func:`slot_argmax` (FLOP formulas: :mod:`.flops`).

* :func:`slot_argmax` — the public entry point: ``backend="auto" | "triton" | "torch"``.
* :func:`slot_argmax_torch` — the chunked torch path (:mod:`.chunked`) as the op
  ``torch.ops.ega.slot_argmax`` with its analytic backward op ``..._backward``.
* The Triton ops ``torch.ops.ega.slot_argmax_triton`` / ``..._triton_backward``
  (:mod:`.triton_op`) are registered on the first Triton call, when Triton is imported:
  importing this module needs torch alone.

Every op has autograd, a fake (meta) implementation and a FLOP formula, so ``torch.compile`` and
``FlopCounterMode`` see it as one op.

FLOPs (matmul FLOPs over the N axis; the exponentials, the greedy and the O(B·K) work are not
counted)::

    forward  = 2·B·N·K·d                    (scores h·tᵀ)
    backward = 2·B·N·K·d  (recompute scores) + 2·B·N·K·d  (dh = ds·t) + 2·B·N·K·d  (dt = dsᵀ·h)
             = 6·B·N·K·d
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..._backend import require_triton, resolve_backend
from .chunked import chunked_backward, chunked_forward
from .contract import accumulation_dtype, check_capacity, check_inputs, check_seed, triton_unsupported
from .flops import backward_flop_formula, forward_flop_formula, slot_argmax_backward_flops, slot_argmax_flops

__all__ = ["slot_argmax", "slot_argmax_backward_flops", "slot_argmax_flops", "slot_argmax_torch"]

# ----------------------------------------------------------------------------------------------
# torch.library registration of the torch path
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op("ega::slot_argmax", mutates_args=())
def _torch_op(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, sample_seed: Optional[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Torch path: (idx (B, K) int64, logz (B, K) h.dtype, lse (B, K) remaining-set LSE, fp32/64)."""
    check_capacity(mask, t.shape[1])
    idx, logz, lse = chunked_forward(h, t, bias, mask, sample_seed)
    return idx, logz.to(h.dtype), lse


def forward_outputs_like(h: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Empty (idx, logz, lse) of the forward ops, for their fake implementations."""
    batch, slots = t.shape[0], t.shape[1]
    return (
        h.new_empty((batch, slots), dtype=torch.int64),
        h.new_empty((batch, slots)),
        h.new_empty((batch, slots), dtype=accumulation_dtype(h.dtype)),
    )


@_torch_op.register_fake
def _(h, t, bias, mask, sample_seed):
    return forward_outputs_like(h, t)


@torch.library.custom_op("ega::slot_argmax_backward", mutates_args=())
def _torch_backward_op(
    grad_logz: Tensor, h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, idx: Tensor, lse: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Torch path backward: (dh (B, N, d), dt (B, K, d), dbias (B, N))."""
    return chunked_backward(grad_logz, h, t, bias, mask, idx, lse)


@_torch_backward_op.register_fake
def _(grad_logz, h, t, bias, mask, idx, lse):
    return torch.empty_like(h), torch.empty_like(t), torch.empty_like(bias)


def _setup_torch_context(ctx, inputs, output) -> None:
    h, t, bias, mask, _ = inputs
    idx, _, lse = output
    ctx.save_for_backward(h, t, bias, mask, idx, lse)
    ctx.mark_non_differentiable(idx, lse)


def _torch_backward(ctx, grad_idx, grad_logz, grad_lse):
    h, t, bias, mask, idx, lse = ctx.saved_tensors
    dh, dt, dbias = torch.ops.ega.slot_argmax_backward(grad_logz, h, t, bias, mask, idx, lse)
    return dh, dt, dbias, None, None


_torch_op.register_autograd(_torch_backward, setup_context=_setup_torch_context)
register_flop_formula(torch.ops.ega.slot_argmax)(forward_flop_formula)
register_flop_formula(torch.ops.ega.slot_argmax_backward)(backward_flop_formula)


# ----------------------------------------------------------------------------------------------
# The two paths and the dispatch
# ----------------------------------------------------------------------------------------------
def _triton_module() -> ModuleType:
    """:mod:`.triton_op`, imported (and its ops registered) on first use of the Triton path."""
    require_triton("slot_argmax")
    from . import triton_op

    return triton_op


def slot_argmax_torch(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, *, sample_seed: Optional[int] = None
) -> tuple[Tensor, Tensor]:
    """The chunked torch path of :func:`slot_argmax` (EGA-V1 Eq. 17) — the CPU production path.

    Same arguments and results as :func:`slot_argmax`; any K and float64 too. Memory: the
    (B, K, N) scores plus O(B·N) per slot, nothing N × N; the backward is the analytic op
    ``torch.ops.ega.slot_argmax_backward``.
    """
    check_inputs(h, t, bias, mask)
    idx, logz, _ = torch.ops.ega.slot_argmax(h, t, bias, mask, check_seed(sample_seed))
    return idx, logz


def slot_argmax(
    h: Tensor,
    t: Tensor,
    bias: Tensor,
    mask: Tensor,
    *,
    sample_seed: Optional[int] = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Greedy masked slot-wise argmax and its sequential log-probabilities (EGA-V1 Eq. 17,
    docs/design.md §3.3).

    Args:
        h: (B, N, d) candidate states; t: (B, K, d) slot tokens; bias: (B, N) per-candidate score
            offset (e^{w_z}·q̂_n·b_n in Eq. 17); mask: (B, N) bool, True = valid candidate.
            h, t, bias share one float dtype and one device.
        sample_seed: None for the greedy allocation; an int in [0, 2^63) to sample each slot from
            the softmax over its remaining candidates (seeded Gumbel noise, same in every path).
        backend: "auto" (Triton on CUDA for fp16/bf16/fp32 and K ≤ 32 when Triton is installed,
            torch otherwise), "triton" or "torch".

    Returns:
        idx: (B, K) int64 chosen positions on the N axis, distinct per row; ties → lower index.
        logz: (B, K) in the input dtype: log z_{y_k,k} = s[y_k, k] − logsumexp over the remaining
            valid candidates of s[:, k], differentiable w.r.t. h, t, bias (the log-probability
            the policy gradient of Eq. 23 weights by the reward of Eq. 22).

    Raises:
        ValueError: bad shapes, a row with fewer than K valid candidates (named), bad seed.
        TypeError: bad dtypes.
    """
    check_inputs(h, t, bias, mask)
    seed = check_seed(sample_seed)
    chosen = resolve_backend(backend, h, t, bias, mask)
    reason = triton_unsupported(h, t) if chosen == "triton" else None
    if reason is not None:
        if backend == "triton":
            raise ValueError(f"slot_argmax: {reason}; use backend='torch'")
        chosen = "torch"  # "auto" falls back to the torch path
    if chosen == "torch":
        idx, logz, _ = torch.ops.ega.slot_argmax(h, t, bias, mask, seed)
        return idx, logz
    return _triton_module().run_triton(h, t, bias, mask, seed)
