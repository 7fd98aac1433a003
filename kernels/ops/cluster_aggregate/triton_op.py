"""Host side of the Triton path of :func:`cluster_aggregate`: launch tuning and the ``torch.library``
ops ``ega::cluster_aggregate_triton`` / ``ega::cluster_aggregate_triton_backward``.

Imported by :mod:`.op` on the first Triton call (it imports triton); importing it registers the
two ops, their autograd and their FLOP formulas.
"""
from __future__ import annotations

import math

import torch
import triton
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..._backend import triton_interpreting
from .autograd import incoming_grads, setup_context
from .flops import backward_flop_formula, forward_flop_formula
from .triton_kernels import _backward_kernel, _combine_kernel, _forward_split_kernel

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Tile limit of the Triton kernels: next_pow2(N_c) · next_pow2(d_h). Three float32 accumulators
# of that size live in registers, and the backward's operands in shared memory (227 KiB on an
# H100). Tuned for N_c = 128, d_h = 32 (4096); every configuration up to 8192 with d_h <= 128
# compiles within it for sm_90 (d_h = 512 would not).
TRITON_MAX_TILE = 128 * 64
TRITON_MAX_HEAD_DIM = 128
# Above this tile the float32 TF32 backward needs more shared memory than an H100 has (303 KiB at
# 128 × 64), so it falls back to IEEE dots.
TF32_BACKWARD_MAX_TILE = 128 * 32
# GPU launch configurations (BLOCK_N, num_warps), keyed by (operand kind, pass). No GPU was
# available when they were chosen, so they come from the compiler's static resource report for
# sm_90 (triton.compile for GPUTarget("cuda", 90, 32) + cuobjdump -res-usage) at N_c = 128,
# d_h = 32: each is the largest block without register spills ("half": bf16 / fp16 operands,
# "tf32": float32 with torch.get_float32_matmul_precision() != "highest"). "ieee" (float32 at
# the default "highest" precision) spills in every configuration tried: the least bad is listed;
# set the matmul precision to "high" (TF32) or use bfloat16 for speed. Re-tune on a GPU with
# perf/bench_cluster_aggregate.py.
GPU_LAUNCH = {
    ("half", "forward"): (32, 8), ("half", "backward"): (16, 4),
    ("tf32", "forward"): (32, 8), ("tf32", "backward"): (16, 8),
    ("ieee", "forward"): (16, 4), ("ieee", "backward"): (16, 8),
}
COMBINE_WARPS = 8  # three (BLOCK_C, BLOCK_D) float32 accumulators without spills at 128 × 32
INTERPRETER_BLOCK_N = 16  # the interpreter's cost grows with the number of blocks, not their size


def check_triton_support(q: Tensor, centroids: Tensor) -> None:
    """Raise if the dtype or the (N_c, d_h) tile is outside what the kernels take."""
    if q.dtype not in TRITON_DTYPES:
        raise TypeError(
            f"cluster_aggregate(backend='triton'): q must be one of {TRITON_DTYPES}, got {q.dtype}; "
            "use backend='torch' for float64"
        )
    n_clusters, head_dim = centroids.shape[1], q.shape[-1]
    tile = triton.next_power_of_2(n_clusters) * triton.next_power_of_2(head_dim)
    if head_dim > TRITON_MAX_HEAD_DIM or tile > TRITON_MAX_TILE:
        raise ValueError(
            f"cluster_aggregate(backend='triton'): N_c = {n_clusters}, d_h = {head_dim} exceed the "
            f"kernels' tile limits (d_h <= {TRITON_MAX_HEAD_DIM}, next_pow2(N_c) * next_pow2(d_h) <= "
            f"{TRITON_MAX_TILE}, got {tile}); use backend='torch'"
        )


def _dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs follow torch's matmul precision setting ("highest" → IEEE fp32 dots)."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "ieee"


def _launch_config(dtype: torch.dtype, pass_name: str, tile: int) -> tuple[int, int, str]:
    """Default (BLOCK_N, num_warps, dot precision) of the forward-split or backward kernel for a
    (BLOCK_C · BLOCK_D = ``tile``) register tile (see GPU_LAUNCH)."""
    precision = _dot_precision(dtype)
    if precision == "tf32" and pass_name == "backward" and tile > TF32_BACKWARD_MAX_TILE:
        precision = "ieee"
    if triton_interpreting():
        return INTERPRETER_BLOCK_N, 4, precision
    kind = "half" if dtype in (torch.float16, torch.bfloat16) else precision
    block_n, num_warps = GPU_LAUNCH[(kind, pass_name)]
    return block_n, num_warps, precision


def _triton_tiling(bh: int, n_rows: int, device: torch.device, block_n: int, split_blocks: int):
    """(rows per split, number of splits) for BLOCK_N = ``block_n``. ``split_blocks`` (blocks
    per program) overrides the default when positive: enough splits of N for about two programs
    per SM (four programs in the interpreter), as B·H alone is too few at B = 1."""
    if block_n < 16 or block_n & (block_n - 1):
        raise ValueError(f"cluster_aggregate: block_n must be a power of two >= 16, got {block_n}")
    n_blocks = max(1, triton.cdiv(n_rows, block_n))
    if split_blocks <= 0:
        if device.type == "cuda" and not triton_interpreting():
            target_programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count
        else:
            target_programs = 4
        wanted_splits = max(1, min(n_blocks, triton.cdiv(target_programs, bh)))
        split_blocks = triton.cdiv(n_blocks, wanted_splits)
    rows_per_split = split_blocks * block_n
    return rows_per_split, max(1, triton.cdiv(n_rows, rows_per_split))


def _cluster_blocks(n_clusters: int, head_dim: int) -> tuple[int, int]:
    """Register tile sizes: powers of two, at least 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(n_clusters)), max(16, triton.next_power_of_2(head_dim))


def _strides(*tensors: Tensor) -> list[int]:
    return [s for t in tensors for s in t.stride()]


@torch.library.triton_op("ega::cluster_aggregate_triton", mutates_args=())
def _triton_op(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, block_n: int, split_blocks: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Triton forward: split kernel over (B·H, splits) then the combine kernel over B·H.
    Returns (A_q, A_k, A_v) (B, H, N_c, d_h) in the input dtype and the LSE (B, H, N_c) float32."""
    batch, heads, n_rows, head_dim = q.shape
    n_clusters = centroids.shape[1]
    bh = batch * heads
    block_c, block_d = _cluster_blocks(n_clusters, head_dim)
    default_block_n, num_warps, precision = _launch_config(q.dtype, "forward", block_c * block_d)
    block_n = block_n if block_n > 0 else default_block_n
    rows_per_split, n_splits = _triton_tiling(bh, n_rows, q.device, block_n, split_blocks)
    part_max = q.new_empty((bh, n_splits, block_c), dtype=torch.float32)
    part_sum = torch.empty_like(part_max)
    part_acc = q.new_empty((bh, n_splits, 3, block_c, block_d), dtype=torch.float32)
    mask_bytes = mask.view(torch.uint8)
    torch.library.wrap_triton(_forward_split_kernel)[(bh, n_splits)](
        q, k, v, centroids, mask_bytes, part_max, part_sum, part_acc,
        *_strides(q, k, v, centroids, mask_bytes),
        heads, n_rows, n_clusters, head_dim, rows_per_split, n_splits, 1.0 / math.sqrt(head_dim),
        BLOCK_N=block_n, BLOCK_C=block_c, BLOCK_D=block_d, DOT_PRECISION=precision,
        UPCAST=triton_interpreting(), num_warps=num_warps,
    )
    out_shape = (batch, heads, n_clusters, head_dim)
    a_q, a_k, a_v = q.new_empty(out_shape), k.new_empty(out_shape), v.new_empty(out_shape)
    lse = q.new_empty(out_shape[:3], dtype=torch.float32)
    torch.library.wrap_triton(_combine_kernel)[(bh,)](
        part_max, part_sum, part_acc, a_q, a_k, a_v, lse, n_clusters, head_dim, n_splits,
        BLOCK_C=block_c, BLOCK_D=block_d, num_warps=COMBINE_WARPS,
    )
    return a_q, a_k, a_v, lse


@torch.library.triton_op("ega::cluster_aggregate_triton_backward", mutates_args=())
def _triton_backward_op(
    grad_a_q: Tensor, grad_a_k: Tensor, grad_a_v: Tensor,
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor,
    a_q: Tensor, a_k: Tensor, a_v: Tensor, log_sum_exp: Tensor, block_n: int, split_blocks: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Triton backward: one pass over N per (b, h, split), then dC = Σ over B and splits of the
    per-program partials. Returns dq, dk, dv (B, H, N, d_h) and dC (H, N_c, d_h)."""
    batch, heads, n_rows, head_dim = q.shape
    n_clusters = centroids.shape[1]
    bh = batch * heads
    block_c, block_d = _cluster_blocks(n_clusters, head_dim)
    default_block_n, num_warps, precision = _launch_config(q.dtype, "backward", block_c * block_d)
    block_n = block_n if block_n > 0 else default_block_n
    rows_per_split, n_splits = _triton_tiling(bh, n_rows, q.device, block_n, split_blocks)
    grad_q, grad_k, grad_v = (q.new_empty(q.shape) for _ in range(3))
    part_grad_c = q.new_empty((batch, heads, n_splits, block_c, block_d), dtype=torch.float32)
    mask_bytes = mask.view(torch.uint8)
    torch.library.wrap_triton(_backward_kernel)[(bh, n_splits)](
        q, k, v, centroids, mask_bytes,
        grad_a_q.contiguous(), grad_a_k.contiguous(), grad_a_v.contiguous(),
        a_q.contiguous(), a_k.contiguous(), a_v.contiguous(), log_sum_exp.contiguous(),
        grad_q, grad_k, grad_v, part_grad_c,
        *_strides(q, k, v, centroids, mask_bytes),
        heads, n_rows, n_clusters, head_dim, rows_per_split, n_splits, 1.0 / math.sqrt(head_dim),
        BLOCK_N=block_n, BLOCK_C=block_c, BLOCK_D=block_d, DOT_PRECISION=precision,
        UPCAST=triton_interpreting(), num_warps=num_warps,
    )
    grad_c = part_grad_c.sum(dim=(0, 2))[:, :n_clusters, :head_dim].to(centroids.dtype).contiguous()
    return grad_q, grad_k, grad_v, grad_c


def _triton_autograd_backward(ctx, grad_a_q, grad_a_k, grad_a_v, _grad_lse):
    grads = incoming_grads(ctx, grad_a_q, grad_a_k, grad_a_v)
    dq, dk, dv, dc = _triton_backward_op(*grads, *ctx.saved_tensors, *ctx.tiling)
    return dq, dk, dv, dc, None, None, None


_triton_op.register_autograd(_triton_autograd_backward, setup_context=setup_context)


register_flop_formula(torch.ops.ega.cluster_aggregate_triton)(forward_flop_formula)
register_flop_formula(torch.ops.ega.cluster_aggregate_triton_backward)(backward_flop_formula)


def run_triton(q, k, v, centroids, mask, block_n: int, split_blocks: int) -> tuple[Tensor, Tensor, Tensor]:
    """The Triton op on validated inputs, after its dtype / tile checks (0 = automatic tiling)."""
    check_triton_support(q, centroids)
    a_q, a_k, a_v, _ = _triton_op(q, k, v, centroids, mask, block_n, split_blocks)
    return a_q, a_k, a_v
