"""Cluster-attention surrogate aggregation ``A_x = Pᵀ x`` (EGA-V1 Eq. 11, SPEC §3.1 and §4).

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

Two implementations share the contract:

* the torch reference (:func:`cluster_aggregate_reference`, the CPU production path), memory-linear
  in N: it streams over N in chunks with a running per-centroid max / sum-exp (the flash-attention
  online softmax, normalised over N instead of over the keys) and saves only the per-centroid
  log-sum-exp; its backward recomputes P chunk by chunk from that LSE;
* fused Triton kernels (CUDA, or Triton's interpreter when ``TRITON_INTERPRET=1``): a forward
  that splits N across programs (grid B·H × splits), a tiny combine kernel merging the partial
  (max, sum, acc), and a backward in one pass over N. Neither path materialises the N × N_c matrix.

Both are ``torch.library`` ops (``torch.ops.ega.cluster_aggregate`` / ``..._backward`` for torch,
``torch.ops.ega.cluster_aggregate_triton`` / ``..._triton_backward`` for Triton) with autograd,
fake (meta) implementations and FLOP formulas, so ``torch.compile`` and ``FlopCounterMode`` see
them as single ops.

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

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ._backend import resolve_backend, triton_interpreting

__all__ = [
    "cluster_aggregate",
    "cluster_aggregate_backward_flops",
    "cluster_aggregate_flops",
    "cluster_aggregate_reference",
    "cluster_aggregate_triton",
]

# Torch path: how many logits (B·H·rows·N_c elements) one chunk holds. Measured with
# `python -m egakit.perf.bench_cluster_aggregate --chunk-sweep` (shared 2-core AMD EPYC, 1 thread, fp32,
# B=1, H=4, N_c=128, d_h=32, N=10^5; median ms, methods interleaved): forward 918 / 1143 / 1077 ms
# at 512 / 1024 / 2048 rows against 1268 at 256 and 1229 at 8192; forward+backward 3546 / 3515 /
# 3467 ms against 3927 at 256 and 3961–3667 at 4096–8192. Flat from 2^18 to 2^20 elements (per-
# chunk op overhead below, cache misses above) within the machine's noise; 2^19 is the middle:
# 1024 rows there, 2 MiB of float32 per (B, H, rows, N_c) temporary.
REFERENCE_CHUNK_ELEMENTS = 1 << 19

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
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


# ----------------------------------------------------------------------------------------------
# FLOP formulas (see the module docstring)
# ----------------------------------------------------------------------------------------------
def cluster_aggregate_flops(batch: int, heads: int, n: int, n_clusters: int, head_dim: int) -> int:
    """Forward matmul FLOPs: logits ``2·B·H·N·N_c·d_h`` + three aggregations ``3·2·B·H·N·N_c·d_h``."""
    return 8 * batch * heads * n * n_clusters * head_dim


def cluster_aggregate_backward_flops(
    batch: int, heads: int, n: int, n_clusters: int, head_dim: int
) -> int:
    """Backward matmul FLOPs ``18·B·H·N·N_c·d_h``: recomputed logits (2), ``P dA_x`` (6),
    ``Σ_x x dA_xᵀ`` (6), ``dl C`` (2) and ``dlᵀ k`` (2), each times ``B·H·N·N_c·d_h``."""
    return 18 * batch * heads * n * n_clusters * head_dim


def _flops_from_shapes(q_shape, centroids_shape, *, backward: bool) -> int:
    batch, heads, n, head_dim = q_shape
    n_clusters = centroids_shape[1]
    formula = cluster_aggregate_backward_flops if backward else cluster_aggregate_flops
    return formula(batch, heads, n, n_clusters, head_dim)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------
def _check_inputs(q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor) -> None:
    """Raise a TypeError / ValueError naming the offending argument."""
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


def _check_triton_support(q: Tensor, centroids: Tensor) -> None:
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


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half / bfloat16 / float32 inputs, float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def _reference_chunk_rows(batch: int, heads: int, n_clusters: int) -> int:
    """Rows of N per chunk so that one (B, H, rows, N_c) logits chunk holds ~REFERENCE_CHUNK_ELEMENTS."""
    return max(1, REFERENCE_CHUNK_ELEMENTS // (batch * heads * n_clusters))


# ----------------------------------------------------------------------------------------------
# Torch reference: chunked online softmax over N, backward recomputing P from the saved LSE
# ----------------------------------------------------------------------------------------------
def _padding_of(mask_chunk: Tensor) -> Tensor | None:
    """(B, 1, n, 1) bool, True on masked candidates of a (B, n) mask chunk; None if all valid."""
    if bool(mask_chunk.all()):
        return None
    return ~mask_chunk[:, None, :, None]


def _chunk_of(q: Tensor, k: Tensor, v: Tensor, rows: slice, padding: Tensor | None,
              acc_dtype: torch.dtype) -> Tensor:
    """[q | k | v][:, :, rows] (B, H, n, 3·d_h) in the accumulation dtype, zeros on masked
    candidates so that padding (even NaN / inf) never reaches the outputs or the gradients.
    One concatenated operand lets each P-sized product run as one matmul instead of three."""
    chunk = torch.cat([q[:, :, rows], k[:, :, rows], v[:, :, rows]], dim=-1).to(acc_dtype)
    return chunk if padding is None else chunk.masked_fill_(padding, 0.0)


def _chunk_logits(k_chunk: Tensor, centroids_scaled_t: Tensor, padding: Tensor | None) -> Tensor:
    """(B, H, n, d_h) @ (H, d_h, N_c) -> (B, H, n, N_c) logits, −inf on masked candidates."""
    logits = torch.matmul(k_chunk, centroids_scaled_t)
    return logits if padding is None else logits.masked_fill_(padding, float("-inf"))


def _reference_forward(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, chunk_rows: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Streaming forward over chunks of N with a running per-centroid max / sum-exp.

    Returns (A_q, A_k, A_v) (B, H, N_c, d_h) in the input dtype and the per-centroid log-sum-exp
    (B, H, N_c) in the accumulation dtype (−inf for a row without valid candidates)."""
    batch, heads, n, head_dim = q.shape
    n_clusters = centroids.shape[1]
    acc_dtype = _accumulation_dtype(q.dtype)
    centroids_scaled_t = (centroids.to(acc_dtype) / math.sqrt(head_dim)).transpose(-1, -2)
    running_max = q.new_full((batch, heads, n_clusters), float("-inf"), dtype=acc_dtype)
    running_sum = q.new_zeros((batch, heads, n_clusters), dtype=acc_dtype)
    running_acc = q.new_zeros((batch, heads, n_clusters, 3 * head_dim), dtype=acc_dtype)  # Σ e^(l−max) [q|k|v]
    shift = torch.zeros_like(running_max)
    for start in range(0, n, chunk_rows):
        rows = slice(start, min(n, start + chunk_rows))
        padding = _padding_of(mask[:, rows])
        chunk = _chunk_of(q, k, v, rows, padding, acc_dtype)                 # (B, H, n, 3·d_h)
        logits = _chunk_logits(chunk[..., head_dim:2 * head_dim], centroids_scaled_t, padding)
        new_max = torch.maximum(running_max, logits.amax(dim=2))
        shift = new_max.masked_fill(new_max == float("-inf"), 0.0)
        probs_t = logits.sub_(shift.unsqueeze(2)).exp_().transpose(-1, -2)  # (B, H, N_c, n)
        rescale = torch.exp(running_max - shift)
        running_sum.mul_(rescale).add_(probs_t.sum(dim=-1))
        running_acc.mul_(rescale.unsqueeze(-1)).add_(torch.matmul(probs_t, chunk))
        running_max = new_max
    log_sum_exp = shift + torch.log(running_sum)  # −inf where no candidate is valid
    denominator = torch.where(running_sum > 0, running_sum, torch.ones_like(running_sum))
    aggregated = running_acc.div_(denominator.unsqueeze(-1)).split(head_dim, dim=-1)
    # Separate contiguous copies: a custom op's outputs may not alias each other.
    a_q, a_k, a_v = (a.to(dtype=q.dtype, memory_format=torch.contiguous_format, copy=True) for a in aggregated)
    return a_q, a_k, a_v, log_sum_exp


def _reference_backward(
    grad_a_q: Tensor, grad_a_k: Tensor, grad_a_v: Tensor,
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor,
    a_q: Tensor, a_k: Tensor, a_v: Tensor, log_sum_exp: Tensor, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Streaming backward: P recomputed per chunk as exp(l − LSE), then dx = P dA_x,
    dP = Σ_x x dA_xᵀ, dl = P (dP − D) with D_c = Σ_x ⟨dA_x[c], A_x[c]⟩, dk += dl C / √d_h and
    dC += Σ_b dlᵀ k / √d_h. Returns dq, dk, dv (B, H, N, d_h) and dC (H, N_c, d_h)."""
    n, head_dim = q.shape[2], q.shape[3]
    acc_dtype = _accumulation_dtype(q.dtype)
    scale = 1.0 / math.sqrt(head_dim)
    centroids_scaled = centroids.to(acc_dtype) * scale                            # (H, N_c, d_h)
    grad_a = torch.cat([grad_a_q, grad_a_k, grad_a_v], dim=-1).to(acc_dtype)      # (B, H, N_c, 3·d_h)
    delta = (grad_a * torch.cat([a_q, a_k, a_v], dim=-1).to(acc_dtype)).sum(-1)   # D_c (B, H, N_c)
    # An all-masked row has LSE −inf; +inf there makes every exp(logit − LSE) zero.
    lse = log_sum_exp.masked_fill(log_sum_exp == float("-inf"), float("inf")).unsqueeze(2)
    grads_x = [torch.empty_like(x) for x in (q, k, v)]
    grad_centroids = torch.zeros_like(centroids, dtype=acc_dtype)
    for start in range(0, n, chunk_rows):
        rows = slice(start, min(n, start + chunk_rows))
        padding = _padding_of(mask[:, rows])
        chunk = _chunk_of(q, k, v, rows, padding, acc_dtype)                      # (B, H, n, 3·d_h)
        k_chunk = chunk[..., head_dim:2 * head_dim]
        probs = _chunk_logits(k_chunk, centroids_scaled.transpose(-1, -2), padding).sub_(lse).exp_()
        grad_logits = torch.matmul(chunk, grad_a.transpose(-1, -2))              # dP (B, H, n, N_c)
        grad_logits.sub_(delta.unsqueeze(2)).mul_(probs)                          # dl
        grad_chunk = torch.matmul(probs, grad_a)                                  # P dA (B, H, n, 3·d_h)
        grad_chunk[..., head_dim:2 * head_dim].add_(torch.matmul(grad_logits, centroids_scaled))
        grad_centroids.add_(torch.matmul(grad_logits.transpose(-1, -2), k_chunk).sum(0), alpha=scale)
        for out, grad in zip(grads_x, grad_chunk.split(head_dim, dim=-1)):
            out[:, :, rows] = grad
    grad_q, grad_k, grad_v = grads_x
    return grad_q, grad_k, grad_v, grad_centroids.to(centroids.dtype)


# ----------------------------------------------------------------------------------------------
# torch.library registration of the torch path
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op("ega::cluster_aggregate", mutates_args=())
def _reference_op(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, chunk_rows: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Torch forward as one op: (A_q, A_k, A_v) (B, H, N_c, d_h) and the LSE (B, H, N_c)."""
    return _reference_forward(q, k, v, centroids, mask, chunk_rows)


@torch.library.custom_op("ega::cluster_aggregate_backward", mutates_args=())
def _reference_backward_op(
    grad_a_q: Tensor, grad_a_k: Tensor, grad_a_v: Tensor,
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor,
    a_q: Tensor, a_k: Tensor, a_v: Tensor, log_sum_exp: Tensor, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Torch backward as one op: dq, dk, dv (B, H, N, d_h) and dC (H, N_c, d_h)."""
    return _reference_backward(
        grad_a_q, grad_a_k, grad_a_v, q, k, v, centroids, mask, a_q, a_k, a_v, log_sum_exp, chunk_rows
    )


def _forward_fake(q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *tiling: int):
    batch, heads, _, head_dim = q.shape
    out_shape = (batch, heads, centroids.shape[1], head_dim)
    lse = q.new_empty(out_shape[:3], dtype=_accumulation_dtype(q.dtype))
    return q.new_empty(out_shape), k.new_empty(out_shape), v.new_empty(out_shape), lse


def _backward_fake(grad_a_q, grad_a_k, grad_a_v, q, k, v, centroids, mask, *rest):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(centroids)


_reference_op.register_fake(_forward_fake)
_reference_backward_op.register_fake(_backward_fake)


# Autograd for both paths: ``register_autograd`` builds the op's torch.autograd.Function from
# this setup_context / backward pair. The forward runs outside autograd (no chunk temporaries are
# kept); only the inputs, the outputs and the (B, H, N_c) LSE are saved, and the backward is its
# own op (``..._backward``) so FlopCounterMode and torch.compile see it whole.
def _setup_context(ctx, inputs, output) -> None:
    """Save q, k, v, C, mask, A_q, A_k, A_v and the LSE; the trailing int inputs are the tiling."""
    q, k, v, centroids, mask, *tiling = inputs
    a_q, a_k, a_v, log_sum_exp = output
    ctx.save_for_backward(q, k, v, centroids, mask, a_q, a_k, a_v, log_sum_exp)
    ctx.tiling = tiling
    ctx.mark_non_differentiable(log_sum_exp)


def _incoming_grads(ctx, grad_a_q, grad_a_k, grad_a_v) -> list[Tensor]:
    """Replace absent output gradients by zeros (N_c × d_h each: cheap)."""
    outputs = ctx.saved_tensors[5:8]
    return [torch.zeros_like(a) if g is None else g for g, a in zip((grad_a_q, grad_a_k, grad_a_v), outputs)]


def _reference_autograd_backward(ctx, grad_a_q, grad_a_k, grad_a_v, _grad_lse):
    grads = _incoming_grads(ctx, grad_a_q, grad_a_k, grad_a_v)
    dq, dk, dv, dc = _reference_backward_op(*grads, *ctx.saved_tensors, *ctx.tiling)
    return dq, dk, dv, dc, None, None


_reference_op.register_autograd(_reference_autograd_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.ega.cluster_aggregate)
def _reference_flops(q_shape, k_shape, v_shape, centroids_shape, *args, **kwargs) -> int:
    return _flops_from_shapes(q_shape, centroids_shape, backward=False)


@register_flop_formula(torch.ops.ega.cluster_aggregate_backward)
def _reference_backward_flops(gq_shape, gk_shape, gv_shape, q_shape, k_shape, v_shape, centroids_shape,
                              *args, **kwargs) -> int:
    return _flops_from_shapes(q_shape, centroids_shape, backward=True)


def cluster_aggregate_reference(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *, chunk_rows: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Torch reference of :func:`cluster_aggregate` (Eq. 11, SPEC §3.1) — the CPU production path.

    Args:
        q, k, v: (B, H, N, d_h). centroids: (H, N_c, d_h), same dtype. mask: (B, N) bool.
        chunk_rows: candidates per chunk; default keeps one (B, H, rows, N_c) chunk near
            ``REFERENCE_CHUNK_ELEMENTS`` logits.

    Returns:
        (A_q, A_k, A_v), each (B, H, N_c, d_h) in the input dtype.

    Memory is linear in N: the forward streams over N with an online per-centroid max / sum-exp;
    the backward (``torch.ops.ega.cluster_aggregate_backward``) recomputes P chunk by chunk from the
    saved per-centroid log-sum-exp, so at most one chunk of N × N_c temporaries lives at a time.
    """
    _check_inputs(q, k, v, centroids, mask)
    return _run_reference(q, k, v, centroids, mask, chunk_rows)


def _run_reference(q, k, v, centroids, mask, chunk_rows: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """The torch op on validated inputs (chunk_rows None = REFERENCE_CHUNK_ELEMENTS logits)."""
    if chunk_rows is None:
        chunk_rows = _reference_chunk_rows(q.shape[0], q.shape[1], centroids.shape[1])
    if chunk_rows < 1:
        raise ValueError(f"cluster_aggregate_reference: chunk_rows must be >= 1, got {chunk_rows}")
    a_q, a_k, a_v, _ = _reference_op(q, k, v, centroids, mask, chunk_rows)
    return a_q, a_k, a_v


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------
@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``tl.dot`` with float32 accumulation into ``acc`` (None = zeros). UPCAST feeds float32
    operands — exact for half-precision values — because Triton's interpreter multiplies the raw
    bit patterns of bfloat16 operands (triton-lang/triton#11584); False on GPU."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _load_rows(base, rows, cols, stride_row, stride_col, row_ok, col_ok):
    """(BLOCK_N, BLOCK_D) tile of one (N, d_h) slice, zeros outside the valid rows / columns
    (masked candidates are never read, so even non-finite padding cannot reach the outputs)."""
    pointers = base + rows[:, None] * stride_row + cols[None, :] * stride_col
    return tl.load(pointers, mask=row_ok[:, None] & col_ok[None, :], other=0.0)


@triton.jit
def _forward_split_kernel(
    Q, K, V, C, MASK,
    PART_MAX, PART_SUM, PART_ACC,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ch, stride_cc, stride_cd,
    stride_mb, stride_mn,
    heads, n_rows, n_clusters, head_dim, rows_per_split, n_splits, scale,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """One program = one (b, h) and one split of N. Streams over the split's rows with a running
    per-centroid max / sum-exp and writes the partial (max, sum, Σ exp(l − max) [q|k|v]).

    Partials (padded to the block sizes, float32):
        PART_MAX, PART_SUM: (B·H, n_splits, BLOCK_C); PART_ACC: (B·H, n_splits, 3, BLOCK_C, BLOCK_D).
    """
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    offs_n = tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    c_ok = offs_c < n_clusters
    d_ok = offs_d < head_dim
    cent = _load_rows(C + h * stride_ch, offs_c, offs_d, stride_cc, stride_cd, c_ok, d_ok)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    run_max = tl.full([BLOCK_C], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_C], tl.float32)
    acc_q = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_k = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_v = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    split_start = split * rows_per_split
    split_stop = tl.minimum(split_start + rows_per_split, n_rows)
    for start in range(split_start, split_stop, BLOCK_N):
        rows = start + offs_n
        in_range = rows < split_stop
        valid = tl.load(MASK + b * stride_mb + rows * stride_mn, mask=in_range, other=0) != 0
        k_tile = _load_rows(k_base, rows, offs_d, stride_kn, stride_kd, valid, d_ok)
        q_tile = _load_rows(q_base, rows, offs_d, stride_qn, stride_qd, valid, d_ok)
        v_tile = _load_rows(v_base, rows, offs_d, stride_vn, stride_vd, valid, d_ok)
        logits = _dot(k_tile, tl.trans(cent), None, DOT_PRECISION, UPCAST) * scale
        logits = tl.where(valid[:, None], logits, float("-inf"))            # (BLOCK_N, BLOCK_C)
        new_max = tl.maximum(run_max, tl.max(logits, axis=0))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        probs = tl.exp(logits - shift[None, :])
        rescale = tl.exp(run_max - shift)
        run_sum = run_sum * rescale + tl.sum(probs, axis=0)
        probs_t = tl.trans(probs.to(k_tile.dtype))                          # (BLOCK_C, BLOCK_N)
        acc_q = _dot(probs_t, q_tile, acc_q * rescale[:, None], DOT_PRECISION, UPCAST)
        acc_k = _dot(probs_t, k_tile, acc_k * rescale[:, None], DOT_PRECISION, UPCAST)
        acc_v = _dot(probs_t, v_tile, acc_v * rescale[:, None], DOT_PRECISION, UPCAST)
        run_max = new_max

    part = bh * n_splits + split
    tl.store(PART_MAX + part * BLOCK_C + offs_c, run_max)
    tl.store(PART_SUM + part * BLOCK_C + offs_c, run_sum)
    tile = offs_c[:, None] * BLOCK_D + offs_d[None, :]
    acc_base = PART_ACC + part * (3 * BLOCK_C * BLOCK_D)
    tl.store(acc_base + tile, acc_q)
    tl.store(acc_base + BLOCK_C * BLOCK_D + tile, acc_k)
    tl.store(acc_base + 2 * BLOCK_C * BLOCK_D + tile, acc_v)


@triton.jit
def _combine_kernel(
    PART_MAX, PART_SUM, PART_ACC, A_Q, A_K, A_V, LSE,
    n_clusters, head_dim, n_splits,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One program per (b, h): merge the n_splits partials (max, sum, acc) with the usual
    log-sum-exp rescaling, write A_x = acc / sum (B, H, N_c, d_h) and LSE (B, H, N_c).
    An all-masked row has sum 0: it gets A = 0 and LSE = −inf."""
    bh = tl.program_id(0).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    tile = offs_c[:, None] * BLOCK_D + offs_d[None, :]
    run_max = tl.full([BLOCK_C], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_C], tl.float32)
    acc_q = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_k = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    acc_v = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    for split in range(0, n_splits):
        part = bh * n_splits + split
        part_max = tl.load(PART_MAX + part * BLOCK_C + offs_c)
        part_sum = tl.load(PART_SUM + part * BLOCK_C + offs_c)
        new_max = tl.maximum(run_max, part_max)
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        old_scale = tl.exp(run_max - shift)
        part_scale = tl.exp(part_max - shift)
        run_sum = run_sum * old_scale + part_sum * part_scale
        acc_base = PART_ACC + part * (3 * BLOCK_C * BLOCK_D)
        acc_q = acc_q * old_scale[:, None] + tl.load(acc_base + tile) * part_scale[:, None]
        acc_k = acc_k * old_scale[:, None] + tl.load(acc_base + BLOCK_C * BLOCK_D + tile) * part_scale[:, None]
        acc_v = acc_v * old_scale[:, None] + tl.load(acc_base + 2 * BLOCK_C * BLOCK_D + tile) * part_scale[:, None]
        run_max = new_max

    has_mass = run_sum > 0
    inverse = tl.where(has_mass, 1.0 / tl.where(has_mass, run_sum, 1.0), 0.0)
    shift = tl.where(run_max == float("-inf"), 0.0, run_max)
    lse = tl.where(has_mass, shift + tl.log(tl.where(has_mass, run_sum, 1.0)), float("-inf"))
    c_ok = offs_c < n_clusters
    tl.store(LSE + bh * n_clusters + offs_c, lse, mask=c_ok)
    out = bh * n_clusters * head_dim + offs_c[:, None] * head_dim + offs_d[None, :]
    out_ok = c_ok[:, None] & (offs_d < head_dim)[None, :]
    tl.store(A_Q + out, (acc_q * inverse[:, None]).to(A_Q.dtype.element_ty), mask=out_ok)
    tl.store(A_K + out, (acc_k * inverse[:, None]).to(A_K.dtype.element_ty), mask=out_ok)
    tl.store(A_V + out, (acc_v * inverse[:, None]).to(A_V.dtype.element_ty), mask=out_ok)


@triton.jit
def _load_cluster_tile(base, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok):
    """(BLOCK_C, BLOCK_D) tile of a contiguous (B·H, N_c, d_h) tensor, zeros outside."""
    pointers = base + bh * n_clusters * head_dim + offs_c[:, None] * head_dim + offs_d[None, :]
    return tl.load(pointers, mask=c_ok[:, None] & d_ok[None, :], other=0.0)


@triton.jit
def _backward_kernel(
    Q, K, V, C, MASK, GRAD_AQ, GRAD_AK, GRAD_AV, A_Q, A_K, A_V, LSE,
    GRAD_Q, GRAD_K, GRAD_V, PART_GRAD_C,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ch, stride_cc, stride_cd,
    stride_mb, stride_mn,
    heads, n_rows, n_clusters, head_dim, rows_per_split, n_splits, scale,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """One program = one (b, h) and one split of N. D_c = Σ_x ⟨dA_x[c], A_x[c]⟩ from the saved
    outputs, then per block of rows: P = exp(l − LSE) (zero on masked rows and padded columns),
    dx = P dA_x, dP = Σ_x x dA_xᵀ, dl = P (dP − D), dk += dl C / √d_h, and the partial
    dC += dlᵀ k / √d_h written to PART_GRAD_C (B·H, n_splits, BLOCK_C, BLOCK_D) float32.
    GRAD_* / A_* / LSE are contiguous; dq, dk, dv are written contiguous (B, H, N, d_h)."""
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    offs_n = tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    c_ok = offs_c < n_clusters
    d_ok = offs_d < head_dim
    dtype = Q.dtype.element_ty
    cent = _load_rows(C + h * stride_ch, offs_c, offs_d, stride_cc, stride_cd, c_ok, d_ok)
    grad_aq = _load_cluster_tile(GRAD_AQ, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    grad_ak = _load_cluster_tile(GRAD_AK, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    grad_av = _load_cluster_tile(GRAD_AV, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    a_q = _load_cluster_tile(A_Q, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    a_k = _load_cluster_tile(A_K, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    a_v = _load_cluster_tile(A_V, bh, offs_c, offs_d, n_clusters, head_dim, c_ok, d_ok)
    delta = tl.sum(
        grad_aq.to(tl.float32) * a_q.to(tl.float32)
        + grad_ak.to(tl.float32) * a_k.to(tl.float32)
        + grad_av.to(tl.float32) * a_v.to(tl.float32),
        axis=1,
    )                                                                        # (BLOCK_C,)
    # +inf where the LSE is −inf (all-masked row) or the column is padding: exp(l − LSE) = 0 there.
    lse = tl.load(LSE + bh * n_clusters + offs_c, mask=c_ok, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse)
    grad_aq = grad_aq.to(dtype)
    grad_ak = grad_ak.to(dtype)
    grad_av = grad_av.to(dtype)

    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    out_offset = bh * n_rows * head_dim
    grad_c = tl.zeros([BLOCK_C, BLOCK_D], tl.float32)
    split_start = split * rows_per_split
    split_stop = tl.minimum(split_start + rows_per_split, n_rows)
    for start in range(split_start, split_stop, BLOCK_N):
        rows = start + offs_n
        in_range = rows < split_stop
        valid = tl.load(MASK + b * stride_mb + rows * stride_mn, mask=in_range, other=0) != 0
        k_tile = _load_rows(k_base, rows, offs_d, stride_kn, stride_kd, valid, d_ok)
        q_tile = _load_rows(q_base, rows, offs_d, stride_qn, stride_qd, valid, d_ok)
        v_tile = _load_rows(v_base, rows, offs_d, stride_vn, stride_vd, valid, d_ok)
        logits = _dot(k_tile, tl.trans(cent), None, DOT_PRECISION, UPCAST) * scale
        logits = tl.where(valid[:, None], logits, float("-inf"))
        probs = tl.exp(logits - lse[None, :])                                 # (BLOCK_N, BLOCK_C)
        probs_lo = probs.to(dtype)
        grad_probs = _dot(q_tile, tl.trans(grad_aq), None, DOT_PRECISION, UPCAST)
        grad_probs = _dot(k_tile, tl.trans(grad_ak), grad_probs, DOT_PRECISION, UPCAST)
        grad_probs = _dot(v_tile, tl.trans(grad_av), grad_probs, DOT_PRECISION, UPCAST)
        grad_logits = (probs * (grad_probs - delta[None, :]) * scale).to(dtype)  # dl / √d_h
        grad_q = _dot(probs_lo, grad_aq, None, DOT_PRECISION, UPCAST)
        grad_k = _dot(probs_lo, grad_ak, None, DOT_PRECISION, UPCAST)
        grad_k = _dot(grad_logits, cent, grad_k, DOT_PRECISION, UPCAST)
        grad_v = _dot(probs_lo, grad_av, None, DOT_PRECISION, UPCAST)
        grad_c = _dot(tl.trans(grad_logits), k_tile, grad_c, DOT_PRECISION, UPCAST)
        out = out_offset + rows[:, None] * head_dim + offs_d[None, :]
        out_ok = in_range[:, None] & d_ok[None, :]
        tl.store(GRAD_Q + out, grad_q.to(dtype), mask=out_ok)
        tl.store(GRAD_K + out, grad_k.to(dtype), mask=out_ok)
        tl.store(GRAD_V + out, grad_v.to(dtype), mask=out_ok)

    part = bh * n_splits + split
    tile = offs_c[:, None] * BLOCK_D + offs_d[None, :]
    tl.store(PART_GRAD_C + part * (BLOCK_C * BLOCK_D) + tile, grad_c)


# ----------------------------------------------------------------------------------------------
# Triton launch helpers and torch.library registration of the Triton path
# ----------------------------------------------------------------------------------------------
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
    grads = _incoming_grads(ctx, grad_a_q, grad_a_k, grad_a_v)
    dq, dk, dv, dc = _triton_backward_op(*grads, *ctx.saved_tensors, *ctx.tiling)
    return dq, dk, dv, dc, None, None, None


_triton_op.register_autograd(_triton_autograd_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.ega.cluster_aggregate_triton)
def _triton_flops(q_shape, k_shape, v_shape, centroids_shape, *args, **kwargs) -> int:
    return _flops_from_shapes(q_shape, centroids_shape, backward=False)


@register_flop_formula(torch.ops.ega.cluster_aggregate_triton_backward)
def _triton_backward_flops(gq_shape, gk_shape, gv_shape, q_shape, k_shape, v_shape, centroids_shape,
                           *args, **kwargs) -> int:
    return _flops_from_shapes(q_shape, centroids_shape, backward=True)


def cluster_aggregate_triton(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *,
    block_n: int = 0, split_blocks: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton path of :func:`cluster_aggregate` with explicit tiling (0 = automatic):
    ``block_n`` rows per block, ``split_blocks`` blocks per program along N."""
    _check_inputs(q, k, v, centroids, mask)
    return _run_triton(q, k, v, centroids, mask, block_n, split_blocks)


def _run_triton(q, k, v, centroids, mask, block_n: int, split_blocks: int) -> tuple[Tensor, Tensor, Tensor]:
    """The Triton op on validated inputs, after its dtype / tile checks."""
    _check_triton_support(q, centroids)
    a_q, a_k, a_v, _ = _triton_op(q, k, v, centroids, mask, block_n, split_blocks)
    return a_q, a_k, a_v


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------
def cluster_aggregate(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, *, backend: str = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """Cluster-attention surrogate aggregation (EGA-V1 Eq. 11 as resolved in SPEC §3.1).

    ``P`` = softmax over the valid candidates n of ``k Cᵀ / √d_h`` (each centroid's column sums
    to 1 over N), and ``A_x = Pᵀ x`` for x = q, k, v.

    Args:
        q, k, v: (B, H, N, d_h), float16 / bfloat16 / float32 (float64 on the torch path).
        centroids: (H, N_c, d_h), the learnable cluster centroids, same dtype as q.
        mask: (B, N) bool, True for valid candidates. A row without any gives zeros.
        backend: "auto" (Triton when every tensor is on CUDA, else torch), "triton" or "torch";
            see :mod:`egakit.kernels._backend`.

    Returns:
        (A_q, A_k, A_v), each (B, H, N_c, d_h) in the input dtype; differentiable w.r.t.
        q, k, v and centroids.
    """
    _check_inputs(q, k, v, centroids, mask)
    if resolve_backend(backend, q, k, v, centroids, mask) == "triton":
        return _run_triton(q, k, v, centroids, mask, block_n=0, split_blocks=0)
    return _run_reference(q, k, v, centroids, mask, chunk_rows=None)
