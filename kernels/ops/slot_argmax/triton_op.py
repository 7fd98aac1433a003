"""Host side of the Triton path of :func:`slot_argmax`: launch tuning and the ``torch.library``
ops ``ega::slot_argmax_triton`` / ``ega::slot_argmax_triton_backward`` (kernels:
:mod:`.triton_kernels`).

Imported by :mod:`.op` on the first Triton call (it imports triton); importing it registers the
two ops, their autograd and their FLOP formulas.

``K > number of valid candidates`` in a row raises a ValueError naming the row. The check needs a
device → host sync; inside ``torch.compile`` of the Triton op (whose body is traced) it cannot run,
and a slot with no candidate left comes back as ``idx = −1``, ``logz = NaN`` instead.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
from torch import Tensor
from torch.library import wrap_triton
from torch.utils.flop_counter import register_flop_formula

from .contract import check_capacity, is_tracing, triton_unsupported
from .gumbel import stream_key
from .flops import backward_flop_formula, forward_flop_formula
from .triton_kernels import (
    _slot_argmax_bwd_kernel,
    _slot_argmax_fwd_kernel,
    _slot_argmax_lse_kernel,
    _slot_argmax_select_kernel,
)

# Candidates per program (≥ 16, tl.dot's minimum). 128 on a GPU (tile 128 × 64 of h); smaller
# under the CPU interpreter, where fewer, larger programs are faster but tests want several blocks
# per row.
CUDA_BLOCK_N = 128
INTERPRETER_BLOCK_N = 32
# Elements of the (CHUNK, K) block-by-pick and (JC, K, K) pick-by-rank-by-pick tiles of the
# select and LSE kernels: a GPU keeps them in registers; the interpreter pays per op, not per
# element, so it takes larger ones (and still several steps at K = 32, to cross step edges).
MERGE_TILE_ELEMENTS = 4096
INTERPRETER_MERGE_TILE_ELEMENTS = 8192
# Blocks per step of the clean-block loops under the interpreter: 2, so that CPU tests cross
# chunk edges.
INTERPRETER_CHUNK = 2
NUM_WARPS = 4
# Backward on a GPU: at most this many (candidate, padded slot) pairs per program. Its
# (BLOCK_N, KP) float32 tiles (scores, ds, ...) and (BLOCK_N, BLOCK_D) ones share the registers;
# from the static resource report for sm_90 (triton.compile for GPUTarget("cuda", 90, 32) +
# cuobjdump -res-usage, bf16, num_warps 4) K = 32 spills 5160 B of stack at BLOCK_N = 128 and 1168 B
# at 64, K ≤ 16 spills 2808 B at 128 as before. No GPU was available to time it: re-tune there.
GPU_BACKWARD_TILE = 128 * 16


def default_block_n(h: Tensor) -> int:
    return CUDA_BLOCK_N if h.is_cuda else INTERPRETER_BLOCK_N


def _tiles(slots: int, dim: int) -> tuple[int, int]:
    """(KP, BLOCK_D): the padded slot count and the d-chunk, both ≥ 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(slots)), min(64, max(16, triton.next_power_of_2(dim)))


def _merge_chunk(n_blocks: int, slot_pad: int, on_cuda: bool) -> int:
    """Blocks per step of the select / LSE loops over blocks (see MERGE_TILE_ELEMENTS)."""
    if not on_cuda:
        return INTERPRETER_CHUNK
    return max(2, min(triton.next_power_of_2(n_blocks), MERGE_TILE_ELEMENTS // slot_pad))


def _picks_per_step(slot_pad: int, on_cuda: bool) -> int:
    """JC: earlier picks' blocks handled per step of the dirty-block loops (a power of two)."""
    tile = MERGE_TILE_ELEMENTS if on_cuda else INTERPRETER_MERGE_TILE_ELEMENTS
    return max(1, min(slot_pad, tile // (slot_pad * slot_pad)))


def _check_block_n(block_n: int) -> None:
    if block_n < 16 or block_n & (block_n - 1):
        raise ValueError(f"slot_argmax: block_n must be a power of two ≥ 16, got {block_n}")


def _score_strides(h: Tensor, t: Tensor, bias: Tensor) -> tuple[int, ...]:
    return (h.stride(0), h.stride(1), h.stride(2), t.stride(0), t.stride(1), t.stride(2),
            bias.stride(0), bias.stride(1))


@torch.library.triton_op("ega::slot_argmax_triton", mutates_args=())
def _triton_op(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, sample_seed: Optional[int], block_n: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton path: (idx (B, K) int64, logz (B, K) h.dtype, lse (B, K) fp32); see the kernels."""
    _check_block_n(block_n)
    reason = triton_unsupported(h, t)
    if reason is not None:
        raise ValueError(f"slot_argmax: {reason}; use backend='torch'")
    batch, n, dim = h.shape
    slots = t.shape[1]
    if not is_tracing(mask):
        check_capacity(mask, slots)
    n_blocks = triton.cdiv(n, block_n)
    kp, block_d = _tiles(slots, dim)
    device = h.device
    lists = (batch, n_blocks, slots, slots)
    keys = torch.empty(lists, dtype=torch.float32, device=device)
    positions = torch.empty(lists, dtype=torch.int32, device=device)
    own = torch.empty(lists, dtype=torch.float32, device=device)
    sample = sample_seed is not None
    score_lists = lists if sample else (1,)  # the by-score lists = the by-key ones without noise
    score_positions = torch.empty(score_lists, dtype=torch.int32, device=device)
    score_values = torch.empty(score_lists, dtype=torch.float32, device=device)
    tail = torch.empty((batch, n_blocks, slots), dtype=torch.float32, device=device)
    block_lse = torch.empty((batch, n_blocks, slots), dtype=torch.float32, device=device)
    idx = torch.empty((batch, slots), dtype=torch.int64, device=device)
    pick_score = torch.empty((batch, slots), dtype=torch.float32, device=device)
    logz = torch.empty((batch, slots), dtype=h.dtype, device=device)
    lse = torch.empty((batch, slots), dtype=torch.float32, device=device)
    if batch == 0:
        return idx, logz, lse
    wrap_triton(_slot_argmax_fwd_kernel)[(n_blocks, batch)](
        h, t, bias, mask, keys, positions, own, score_positions, score_values, tail, block_lse,
        n, dim, n_blocks, stream_key(sample_seed) if sample else 0,
        *_score_strides(h, t, bias), mask.stride(0), mask.stride(1),
        K=slots, KP=kp, BLOCK_N=block_n, BLOCK_D=block_d, SAMPLE=sample,
        DOT_FP32=not h.is_cuda, num_warps=NUM_WARPS,
    )
    slot_pad = max(2, triton.next_power_of_2(slots))
    chunk = _merge_chunk(n_blocks, slot_pad, h.is_cuda)
    picks_per_step = _picks_per_step(slot_pad, h.is_cuda)
    wrap_triton(_slot_argmax_select_kernel)[(batch,)](
        keys, positions, own, idx, pick_score, n_blocks,
        K=slots, KS=slot_pad, CHUNK=chunk, JC=picks_per_step, BLOCK_N=block_n, num_warps=NUM_WARPS,
    )
    wrap_triton(_slot_argmax_lse_kernel)[(slots, batch)](
        h, t, bias, score_positions if sample else positions, score_values if sample else own,
        tail, block_lse, idx, pick_score, logz, lse, dim, n_blocks, *_score_strides(h, t, bias),
        K=slots, KS=slot_pad, CHUNK=chunk, JC=picks_per_step, BLOCK_N=block_n, BLOCK_D=block_d,
        num_warps=NUM_WARPS,
    )
    return idx, logz, lse


@torch.library.triton_op("ega::slot_argmax_triton_backward", mutates_args=())
def _triton_backward_op(
    grad_logz: Tensor, h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, idx: Tensor, lse: Tensor,
    block_n: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton path backward: (dh (B, N, d), dt (B, K, d), dbias (B, N))."""
    _check_block_n(block_n)
    batch, n, dim = h.shape
    slots = t.shape[1]
    kp, block_d = _tiles(slots, dim)
    if h.is_cuda:  # the backward recomputes everything from idx and lse: its own block size
        block_n = min(block_n, max(16, GPU_BACKWARD_TILE // kp))
    n_blocks = triton.cdiv(n, block_n)
    dh = torch.empty((batch, n, dim), dtype=h.dtype, device=h.device)
    dbias = torch.empty((batch, n), dtype=bias.dtype, device=h.device)
    dt_partial = torch.empty((batch, n_blocks, slots, dim), dtype=torch.float32, device=h.device)
    if batch > 0:
        wrap_triton(_slot_argmax_bwd_kernel)[(n_blocks, batch)](
            h, t, bias, mask, idx.contiguous(), lse.contiguous(), grad_logz.contiguous(),
            dh, dbias, dt_partial, n, dim, n_blocks,
            *_score_strides(h, t, bias), mask.stride(0), mask.stride(1),
            K=slots, KP=kp, BLOCK_N=block_n, BLOCK_D=block_d, DOT_FP32=not h.is_cuda,
            num_warps=NUM_WARPS,
        )
    return dh, dt_partial.sum(dim=1).to(t.dtype), dbias


def _setup_context(ctx, inputs, output) -> None:
    h, t, bias, mask, _, block_n = inputs
    idx, _, lse = output
    ctx.save_for_backward(h, t, bias, mask, idx, lse)
    ctx.block_n = block_n
    ctx.mark_non_differentiable(idx, lse)


def _backward(ctx, grad_idx, grad_logz, grad_lse):
    h, t, bias, mask, idx, lse = ctx.saved_tensors
    dh, dt, dbias = torch.ops.ega.slot_argmax_triton_backward(
        grad_logz, h, t, bias, mask, idx, lse, ctx.block_n
    )
    return dh, dt, dbias, None, None, None


_triton_op.register_autograd(_backward, setup_context=_setup_context)
register_flop_formula(torch.ops.ega.slot_argmax_triton)(forward_flop_formula)
register_flop_formula(torch.ops.ega.slot_argmax_triton_backward)(backward_flop_formula)


def run_triton(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, sample_seed: Optional[int], block_n: int = 0
) -> tuple[Tensor, Tensor]:
    """(idx, logz) of the Triton op on validated inputs (``block_n`` 0 = the default block)."""
    idx, logz, _ = torch.ops.ega.slot_argmax_triton(
        h, t, bias, mask, sample_seed, block_n or default_block_n(h)
    )
    return idx, logz
