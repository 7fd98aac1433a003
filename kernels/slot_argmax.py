"""Greedy masked slot-wise argmax with sequential log-probabilities (EGA-V1 Eq. 17, SPEC §3.3, §4).

Contract (identical in every path)::

    h     : (B, N, d)  float16 / bfloat16 / float32 (float64: torch path only)   candidate states
    t     : (B, K, d)  same dtype                                                  slot tokens T
    bias  : (B, N)     same dtype          e.g. e^{w_z}·q̂_n·b_n of Eq. 17
    mask  : (B, N)     bool                True = valid candidate
    s[b, n, k] = h[b, n] · t[b, k] + bias[b, n]                 (float32 accumulation)
    R_k        = {n valid} \\ {y_1, …, y_{k-1}}                  (the remaining set of slot k)
    y_k        = argmax_{n ∈ R_k} (s[b, n, k] + g[b, n, k])     (g = 0 unless sampling; ties → lower n)
    logz_k     = s[b, y_k, k] − logsumexp_{n ∈ R_k} s[b, n, k]   (log z_{y_k,k} of Eq. 17 / Eq. 23)
    returns idx (B, K) int64 positions on the N axis, logz (B, K) in the input dtype.

Sampling (``sample_seed`` an int): g[b, n, k] is standard Gumbel noise, a deterministic function of
(seed, b, n, k) computed by the same counter-based integer hash in both paths (:func:`gumbel_noise`),
so the argmax draws each slot from the softmax over its remaining set (sampling without
replacement) and both paths pick the same candidates for the same seed. ``logz`` stays the exact
noise-free log-probability of the sampled sequence (what the policy gradient of Eq. 23 needs).

Gradients flow from ``logz`` to ``h``, ``t`` and ``bias`` (``idx`` is not differentiable)::

    ds[n, k] = g_k · (1[n = y_k] − softmax_{R_k}(s[:, k])[n] · 1[n ∈ R_k])
    dh = ds · t,   dt = dsᵀ · h,   dbias = Σ_k ds

Two implementations share the contract:

* the torch reference (:func:`slot_argmax_reference`, and the op ``torch.ops.ega.slot_argmax``
  with an analytic backward), memory-linear in N: (B, K, N) score temporaries, never N × N;
* fused Triton kernels (CUDA, or Triton's interpreter when ``TRITON_INTERPRET=1``):

  1. ``_slot_argmax_fwd_kernel``, grid (N / BLOCK_N, B), one pass over N. Each program scores its
     block for all K slots (tl.dot, fp32 accumulation) and extracts, per slot, the block's top K by
     the selection key (score, plus noise when sampling). The union U of these lists (≤ K²
     candidates) holds every candidate that can ever be picked from this block, so it is stored
     explicitly: per list entry its key, position, each slot's noise-free score, and a flag marking
     the candidate's first entry (a candidate can top several slots' lists). The rest of the
     block's mass is stored as two log-sum-exps per slot: over the whole block and over its "tail"
     (the block minus U).
  2. ``_slot_argmax_merge_kernel``, grid (B,): the greedy. Slot k's winner is the best non-excluded
     entry of the slot-k lists (at most K − 1 are excluded, so K per block suffice). Its remaining
     log-sum-exp adds the whole-block LSE of every block that holds no excluded candidate, and for
     the ≤ K − 1 blocks that do, recomputes that block's LSE from its tail and its union scores with
     the excluded ones left out. Every picked candidate lies in its block's U, so nothing is ever
     subtracted: no log(exp(LSE_all) − Σ exp(s_excluded)) cancellation, even when an excluded ad
     holds almost all of slot k's mass (slot tokens are often similar, so the slot-1 winner often
     dominates slot 2). The merge is a kernel, not torch code, because the greedy is K sequential
     steps of ~a dozen tiny ops each: in eager torch that is ~10² kernel launches (at ~5 µs each,
     longer than the whole memory-bound pass over N = 10^5 candidates, which reads 26 MB of bf16
     h: ~10 µs at H100 bandwidth); in one program per row it is one launch.
  3. ``_slot_argmax_bwd_kernel``, grid (N / BLOCK_N, B), one pass over N: recompute s from h and t,
     rebuild R_k from ``idx`` and the saved remaining-set LSE, write dh and dbias, and a per-block
     partial of dt that torch sums over blocks (deterministic, no atomics).

Both paths are ``torch.library`` ops in the ``ega`` namespace with autograd, fake (meta)
implementations and FLOP formulas, so ``torch.compile`` and ``FlopCounterMode`` see single ops:
``ega::slot_argmax`` / ``ega::slot_argmax_backward`` (``custom_op``, torch) and
``ega::slot_argmax_triton`` / ``ega::slot_argmax_triton_backward`` (``triton_op``).

FLOPs (matmul FLOPs over the N axis; the exponentials, the greedy and the O(B·K) work are not
counted)::

    forward  = 2·B·N·K·d                    (scores h·tᵀ)
    backward = 2·B·N·K·d  (recompute scores) + 2·B·N·K·d  (dh = ds·t) + 2·B·N·K·d  (dt = dsᵀ·h)
             = 6·B·N·K·d

Limits of the Triton path: K ≤ 8 (``TRITON_MAX_SLOTS``; the kernels unroll O(K²) steps) and
fp16 / bf16 / fp32; ``backend="auto"`` sends anything else to the torch path.

``K > number of valid candidates`` in a row raises a ValueError naming the row. The check needs a
device → host sync; inside ``torch.compile`` of the Triton op (whose body is traced) it cannot run,
and a slot with no candidate left comes back as ``idx = −1``, ``logz = NaN`` instead.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake
from torch.library import wrap_triton
from torch.utils.flop_counter import register_flop_formula

from ._backend import resolve_backend

__all__ = [
    "gumbel_noise",
    "slot_argmax",
    "slot_argmax_backward_flops",
    "slot_argmax_flops",
    "slot_argmax_reference",
]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Triton path: the kernels unroll O(K²) steps over tiles of K² union entries (compile time grows
# fast: K = 16 took ~9 min to build for sm_90); EGA-V1 uses K = 5. Larger K goes to the torch path.
TRITON_MAX_SLOTS = 8
# Torch path: rows of N scored per chunk when the inputs must be upcast (bf16/fp16 → fp32), so the
# upcast copy of h is at most CHUNK_ROWS × d, not N × d.
REFERENCE_CHUNK_ROWS = 4096
# Triton path: candidates per program (≥ 16, tl.dot's minimum). 128 on a GPU (tile 128 × 64 of h);
# smaller under the CPU interpreter, where fewer, larger programs are faster but tests want several
# blocks per row.
CUDA_BLOCK_N = 128
INTERPRETER_BLOCK_N = 32
MAX_SEED = (1 << 63) - 1

_MASK32 = 0xFFFFFFFF
_MIX_M1 = 0x7FEB352D  # lowbias32 multipliers (C. Wellons' integer hash prospector)
_MIX_M2 = 0x846CA68B
_SEED_SALT = 0x9E3779B9


# ----------------------------------------------------------------------------------------------
# FLOP formulas (see the module docstring)
# ----------------------------------------------------------------------------------------------
def slot_argmax_flops(batch: int, n: int, slots: int, dim: int) -> int:
    """Forward matmul FLOPs: the scores ``h·tᵀ``, ``2·B·N·K·d``."""
    return 2 * batch * n * slots * dim


def slot_argmax_backward_flops(batch: int, n: int, slots: int, dim: int) -> int:
    """Backward matmul FLOPs: recompute scores, ``dh = ds·t`` and ``dt = dsᵀ·h``: ``6·B·N·K·d``."""
    return 6 * batch * n * slots * dim


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------
def _check_inputs(h: Tensor, t: Tensor, bias: Tensor, mask: Tensor) -> None:
    """Raise a clear error for bad shapes, dtypes or devices (metadata only: no device sync)."""
    for name, x in (("h", h), ("t", t), ("bias", bias), ("mask", mask)):
        if not isinstance(x, Tensor):
            raise TypeError(f"slot_argmax: {name} must be a torch.Tensor, got {type(x).__name__}")
    if h.dim() != 3:
        raise ValueError(f"slot_argmax: h must be (B, N, d), got shape {tuple(h.shape)}")
    batch, n, dim = h.shape
    if t.dim() != 3 or t.shape[0] != batch or t.shape[2] != dim:
        raise ValueError(
            f"slot_argmax: t must be (B, K, d) = ({batch}, K, {dim}) to match h {tuple(h.shape)}, "
            f"got {tuple(t.shape)}"
        )
    if tuple(bias.shape) != (batch, n):
        raise ValueError(f"slot_argmax: bias must be (B, N) = ({batch}, {n}), got {tuple(bias.shape)}")
    if tuple(mask.shape) != (batch, n):
        raise ValueError(f"slot_argmax: mask must be (B, N) = ({batch}, {n}), got {tuple(mask.shape)}")
    if n < 1 or dim < 1 or t.shape[1] < 1:
        raise ValueError(f"slot_argmax: N, K and d must be ≥ 1, got N={n}, K={t.shape[1]}, d={dim}")
    if h.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"slot_argmax: h must be one of {SUPPORTED_DTYPES}, got {h.dtype}")
    for name, x in (("t", t), ("bias", bias)):
        if x.dtype != h.dtype:
            raise TypeError(f"slot_argmax: {name} must have h's dtype {h.dtype}, got {x.dtype}")
    if mask.dtype != torch.bool:
        raise TypeError(f"slot_argmax: mask must be torch.bool (True = valid), got {mask.dtype}")
    devices = {name: x.device for name, x in (("h", h), ("t", t), ("bias", bias), ("mask", mask))}
    if len(set(devices.values())) != 1:
        raise ValueError(f"slot_argmax: all inputs must be on one device, got {devices}")


def _check_seed(sample_seed: object) -> Optional[int]:
    """``None`` (greedy) or an int in [0, 2^63) (sampling)."""
    if sample_seed is None:
        return None
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int):
        raise TypeError(f"slot_argmax: sample_seed must be an int or None, got {sample_seed!r}")
    if not 0 <= sample_seed <= MAX_SEED:
        raise ValueError(f"slot_argmax: sample_seed must be in [0, 2^63), got {sample_seed}")
    return sample_seed


def _check_capacity(mask: Tensor, slots: int) -> None:
    """K ≤ valid candidates in every row, else a ValueError naming the first bad row (host sync)."""
    counts = mask.sum(dim=1)
    short = torch.nonzero(counts < slots).flatten()
    if short.numel():
        row = int(short[0])
        raise ValueError(
            f"slot_argmax: row {row} has {int(counts[row])} valid candidates, fewer than the "
            f"K = {slots} slots to fill ({short.numel()} row(s) short: {short[:8].tolist()})"
        )


def _is_tracing(x: Tensor) -> bool:
    """True under fake / functional tracing (torch.compile, export), where data is not available."""
    return is_fake(x) or torch.compiler.is_compiling()


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------
# Gumbel noise: a counter-based hash of (seed, b, n, k), bit-identical in torch and Triton
# ----------------------------------------------------------------------------------------------
def _mix32_int(x: int) -> int:
    """lowbias32 on a Python int in [0, 2^32)."""
    x ^= x >> 16
    x = (x * _MIX_M1) & _MASK32
    x ^= x >> 15
    x = (x * _MIX_M2) & _MASK32
    x ^= x >> 16
    return x


def _stream_key(sample_seed: int) -> int:
    """32-bit key of a seed in [0, 2^63): both halves of the seed go through the mixer."""
    low, high = sample_seed & _MASK32, (sample_seed >> 32) & _MASK32
    return _mix32_int(low ^ _mix32_int(high ^ _SEED_SALT))


def _mul32(x: Tensor, constant: int) -> Tensor:
    """(x · constant) mod 2^32 for int64 x in [0, 2^32) without int64 overflow (16-bit halves)."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def _mix32_torch(x: Tensor) -> Tensor:
    """lowbias32 on an int64 tensor holding uint32 values."""
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_M1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_M2)
    return x ^ (x >> 16)


def _gumbel_from_bits(bits: Tensor) -> Tensor:
    """uint32 bits → u = (⌊bits / 2⁹⌋ + ½)·2⁻²³ ∈ (0, 1) (exact in fp32) → −log(−log u), fp32."""
    u = ((bits >> 9).to(torch.float32) + 0.5) * (2.0 ** -23)
    return -torch.log(-torch.log(u))


def gumbel_noise(sample_seed: int, batch: int, n: int, slots: int, *, device=None) -> Tensor:
    """Standard Gumbel noise g[b, n, k], (B, N, K) float32, as both paths compute it.

    bits = mix(mix(c[b, k] ^ n) ^ key), c[b, k] = mix(mix(key ^ b) ^ k), key = the seed's 32-bit
    stream key, mix = lowbias32; identical bits in torch (int64 masked to 32 bits) and Triton (uint32).
    """
    if sample_seed is None:
        raise TypeError("gumbel_noise: sample_seed must be an int in [0, 2^63), got None")
    key = _stream_key(_check_seed(sample_seed))
    rows = torch.arange(batch, dtype=torch.int64, device=device)[:, None, None]
    cands = torch.arange(n, dtype=torch.int64, device=device)[None, :, None]
    cols = torch.arange(slots, dtype=torch.int64, device=device)[None, None, :]
    per_slot = _mix32_torch(_mix32_torch(key ^ rows) ^ cols)
    bits = _mix32_torch(_mix32_torch(per_slot ^ cands) ^ key)
    return _gumbel_from_bits(bits)


# ----------------------------------------------------------------------------------------------
# Torch path (reference semantics, memory-linear in N)
# ----------------------------------------------------------------------------------------------
def _scores(h: Tensor, t: Tensor, bias: Tensor) -> Tensor:
    """s = t·hᵀ + bias, (B, K, N) in the accumulation dtype (slot-major: each slot's scores are a
    contiguous row for the per-slot masking and reductions); bf16/fp16 are upcast per N-chunk."""
    # The product runs candidate-major, (N, d) @ (d, K), and is then transposed: measured here
    # (2-core AMD EPYC, 1 thread, B = 1, N = 10^5, K = 5, d = 128, float32) 9.9 ms against
    # 14.4 ms for the slot-major t @ hᵀ, which hands the BLAS a transposed N-long operand.
    acc = _accumulation_dtype(h.dtype)
    t_acc_t = t.to(acc).transpose(1, 2)
    if h.dtype == acc:
        candidate_major = torch.matmul(h, t_acc_t)
    else:
        candidate_major = torch.cat(
            [torch.matmul(h[:, start:start + REFERENCE_CHUNK_ROWS].to(acc), t_acc_t)
             for start in range(0, h.shape[1], REFERENCE_CHUNK_ROWS)],
            dim=1,
        )
    return (candidate_major + bias.to(acc)[:, :, None]).transpose(1, 2).contiguous()


def _greedy(scores: Tensor, keys: Optional[Tensor], mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy over slots: (idx (B, K) int64, logz (B, K), lse (B, K)) from (B, K, N) scores and
    selection keys (None: the scores themselves).

    ``torch.argmax`` returns the first maximal index, so ties go to the lower n. Differentiable in
    ``scores`` (autograd sees masked_fill / logsumexp / gather only: B·N memory per slot).
    """
    remaining = mask.clone()
    picks, logzs, lses = [], [], []
    for k in range(scores.shape[1]):
        score_k = scores[:, k].masked_fill(~remaining, float("-inf"))
        key_k = score_k if keys is None else keys[:, k].masked_fill(~remaining, float("-inf"))
        pick = key_k.detach().argmax(dim=1)
        lse_k = torch.logsumexp(score_k, dim=1)
        logzs.append(score_k.gather(1, pick[:, None])[:, 0] - lse_k)
        lses.append(lse_k)
        picks.append(pick)
        remaining = remaining.scatter(1, pick[:, None], False)
    return torch.stack(picks, 1), torch.stack(logzs, 1), torch.stack(lses, 1)


def _selection_keys(scores: Tensor, sample_seed: Optional[int]) -> Optional[Tensor]:
    """(B, K, N) scores + the seeded Gumbel noise, or None without a seed."""
    if sample_seed is None:
        return None
    batch, slots, n = scores.shape
    noise = gumbel_noise(sample_seed, batch, n, slots, device=scores.device).transpose(1, 2)
    return scores.detach() + noise.to(scores.dtype)


def slot_argmax_reference(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, *, sample_seed: Optional[int] = None
) -> tuple[Tensor, Tensor]:
    """Plain-torch greedy slot argmax (Eq. 17, SPEC §3.3); autograd runs through it.

    Args: h (B, N, d), t (B, K, d), bias (B, N), mask (B, N) bool; ``sample_seed`` adds the seeded
    Gumbel noise of :func:`gumbel_noise` before each argmax.
    Returns: idx (B, K) int64, logz (B, K) in h's dtype (see the module docstring).
    Memory: the (B, K, N) scores plus O(B·N) per slot; nothing N × N.
    """
    _check_inputs(h, t, bias, mask)
    seed = _check_seed(sample_seed)
    _check_capacity(mask, t.shape[1])
    scores = _scores(h, t, bias)
    idx, logz, _ = _greedy(scores, _selection_keys(scores, seed), mask)
    return idx, logz.to(h.dtype)


def _reference_forward(h, t, bias, mask, sample_seed):
    with torch.no_grad():
        scores = _scores(h, t, bias)
        return _greedy(scores, _selection_keys(scores, sample_seed), mask)


def _pick_rank(idx: Tensor, n: int) -> Tensor:
    """(B, N) int64: the slot at which candidate n was picked, K if never."""
    batch, slots = idx.shape
    rank = torch.full((batch, n), slots, dtype=torch.int64, device=idx.device)
    order = torch.arange(slots, device=idx.device).expand(batch, slots)
    return rank.scatter(1, idx, order)


def _reference_backward(grad_logz, h, t, bias, mask, idx, lse):
    """(dh, dt, dbias) of logz (ds as in the module docstring), with (B, K, N) temporaries.

    float32 / float64 inputs: two batched matmuls write dh and dt directly. bf16 / fp16: dh and
    dt are accumulated per N-chunk, so the float32 copies of h and dh stay one chunk long.
    """
    acc = _accumulation_dtype(h.dtype)
    slots = t.shape[1]
    t_acc = t.to(acc)
    rank = _pick_rank(idx, h.shape[1])[:, None, :]
    slot_ids = torch.arange(slots, device=h.device)[None, :, None]
    remaining = mask[:, None, :] & (rank >= slot_ids)
    scores = _scores(h, t, bias)
    prob = torch.where(remaining, torch.exp(scores - lse.to(acc)[:, :, None]), 0.0)
    ds = grad_logz.to(acc)[:, :, None] * ((rank == slot_ids).to(acc) - prob)  # (B, K, N)
    dbias = ds.sum(dim=1).to(bias.dtype)
    if h.dtype == acc:
        return torch.matmul(ds.transpose(1, 2), t_acc), torch.bmm(ds, h).to(t.dtype), dbias
    dh = torch.empty_like(h)
    dt = torch.zeros(t.shape, dtype=acc, device=h.device)
    for start in range(0, h.shape[1], REFERENCE_CHUNK_ROWS):
        rows = slice(start, start + REFERENCE_CHUNK_ROWS)
        dh[:, rows] = torch.matmul(ds[:, :, rows].transpose(1, 2), t_acc)
        dt += torch.bmm(ds[:, :, rows], h[:, rows].to(acc))
    return dh, dt.to(t.dtype), dbias


@torch.library.custom_op("ega::slot_argmax", mutates_args=())
def _slot_argmax_torch_op(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, sample_seed: Optional[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Torch path: (idx (B, K) int64, logz (B, K) h.dtype, lse (B, K) remaining-set LSE, fp32/64)."""
    _check_capacity(mask, t.shape[1])
    idx, logz, lse = _reference_forward(h, t, bias, mask, sample_seed)
    return idx, logz.to(h.dtype), lse


@_slot_argmax_torch_op.register_fake
def _(h, t, bias, mask, sample_seed):
    return _forward_outputs_like(h, t)


def _forward_outputs_like(h: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    batch, slots = t.shape[0], t.shape[1]
    return (
        h.new_empty((batch, slots), dtype=torch.int64),
        h.new_empty((batch, slots)),
        h.new_empty((batch, slots), dtype=_accumulation_dtype(h.dtype)),
    )


@torch.library.custom_op("ega::slot_argmax_backward", mutates_args=())
def _slot_argmax_torch_backward_op(
    grad_logz: Tensor, h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, idx: Tensor, lse: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Torch path backward: (dh (B, N, d), dt (B, K, d), dbias (B, N))."""
    return _reference_backward(grad_logz, h, t, bias, mask, idx, lse)


@_slot_argmax_torch_backward_op.register_fake
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


_slot_argmax_torch_op.register_autograd(_torch_backward, setup_context=_setup_torch_context)


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------
@triton.jit
def _mix32(x):
    """lowbias32 on uint32 (wrapping multiply), as ``_mix32_torch``."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    x = x ^ (x >> 16)
    return x


@triton.jit
def _gumbel_tile(stream_key, row, offs_n, offs_k):
    """(BLOCK_N, KP) Gumbel noise for candidates ``offs_n`` and slots ``offs_k`` of row ``row``."""
    key = stream_key.to(tl.uint32)
    per_row = _mix32(key ^ row.to(tl.uint32))
    per_slot = _mix32(per_row ^ offs_k.to(tl.uint32))
    bits = _mix32(_mix32(per_slot[None, :] ^ offs_n.to(tl.uint32)[:, None]) ^ key)
    u = ((bits >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07
    return -tl.log(-tl.log(u))


@triton.jit
def _block_scores(h_ptr, t_ptr, bias_ptr, row, offs_n, offs_k, in_n, D,
                  s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
                  K: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, KP: tl.constexpr,
                  DOT_FP32: tl.constexpr):
    """(BLOCK_N, KP) fp32 scores h·tᵀ + bias of one block (padding rows/slots hold garbage).

    ``DOT_FP32`` upcasts 16-bit operands before tl.dot: Triton's CPU interpreter multiplies the
    raw bf16 bits otherwise. On a GPU it is off, and bf16/fp16 go to the tensor cores.
    """
    acc = tl.zeros((BLOCK_N, KP), dtype=tl.float32)
    h_rows = h_ptr + row.to(tl.int64) * s_hb + offs_n.to(tl.int64)[:, None] * s_hn
    t_cols = t_ptr + row.to(tl.int64) * s_tb + offs_k[None, :] * s_tk
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        h_tile = tl.load(h_rows + offs_d[None, :] * s_hd, mask=in_n[:, None] & in_d[None, :], other=0.0)
        t_tile = tl.load(t_cols + offs_d[:, None] * s_td, mask=in_d[:, None] & (offs_k < K)[None, :],
                         other=0.0)
        if DOT_FP32:
            h_tile = h_tile.to(tl.float32)
            t_tile = t_tile.to(tl.float32)
        acc += tl.dot(h_tile, t_tile, input_precision="ieee")
    bias = tl.load(bias_ptr + row.to(tl.int64) * s_bb + offs_n * s_bn, mask=in_n, other=0.0)
    return acc + bias.to(tl.float32)[:, None]


@triton.jit
def _column_lse(x):
    """Log-sum-exp over axis 0 of a (BLOCK_N, KP) tile (−inf for an all −inf column)."""
    top = tl.max(x, axis=0)
    safe = tl.where(top == float("-inf"), 0.0, top)
    total = tl.sum(tl.exp(x - safe[None, :]), axis=0)
    return tl.where(total > 0, safe + tl.log(tl.where(total > 0, total, 1.0)), float("-inf"))


@triton.jit
def _slot_argmax_fwd_kernel(
    h_ptr, t_ptr, bias_ptr, mask_ptr,
    key_ptr, pos_ptr, first_ptr, row_ptr, tail_ptr, blse_ptr,
    N, D, NB, stream_key,
    s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn, s_mb, s_mn,
    K: tl.constexpr, KP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    SAMPLE: tl.constexpr, DOT_FP32: tl.constexpr,
):
    """Per (block, row): top-K lists per slot, union scores, tail and block LSE (module docstring).

    Outputs, per row and block, entry e = (slot j, rank r) flattened as j·K + r:
      key   (B, NB, K, K)    fp32 selection key of slot j's r-th best candidate (−inf: none)
      pos   (B, NB, K, K)    int32 its position on N (−1: none)
      first (B, NB, K, K)    int8 1 if this is the candidate's first entry in the block (j-major)
      row   (B, NB, K, K, K) fp32 its noise-free scores for every slot
      tail, blse (B, NB, K)  fp32 LSE per slot over the block minus its union / the whole block
    """
    blk = tl.program_id(0)
    row = tl.program_id(1)
    local = tl.arange(0, BLOCK_N)
    offs_n = blk * BLOCK_N + local
    offs_k = tl.arange(0, KP)
    in_n = offs_n < N
    slot_ok = offs_k < K
    valid = tl.load(mask_ptr + row.to(tl.int64) * s_mb + offs_n * s_mn, mask=in_n, other=0) != 0
    live = valid[:, None] & slot_ok[None, :]

    scores = _block_scores(h_ptr, t_ptr, bias_ptr, row, offs_n, offs_k, in_n, D,
                           s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
                           K, BLOCK_D, BLOCK_N, KP, DOT_FP32)
    scores = tl.where(live, scores, float("-inf"))
    finite_scores = tl.where(live, scores, 0.0)  # operand of the exact one-hot gathers below
    if SAMPLE:
        keys = tl.where(live, scores + _gumbel_tile(stream_key, row, offs_n, offs_k), float("-inf"))
    else:
        keys = scores

    taken = tl.zeros((BLOCK_N, KP), dtype=tl.float32)  # 1: candidate n already listed for slot j
    entry_base = (row.to(tl.int64) * NB + blk) * (K * K)
    for r in tl.static_range(K):
        # slot j's best remaining candidate: key and lowest local index among ties
        best, at = tl.max(keys, axis=0, return_indices=True, return_indices_tie_break_left=True)
        found = best > float("-inf")
        is_pick = local[:, None] == at[None, :]  # (BLOCK_N, KP): column j marks slot j's pick
        pick_rows = (at[:, None] == local[None, :]).to(tl.float32)  # (KP, BLOCK_N) one-hot rows
        # one-hot gathers as exact fp32 matmuls: each pick's scores for every slot, and whether a
        # slot already listed it at an earlier rank
        pick_scores = tl.dot(pick_rows, finite_scores, input_precision="ieee")  # (KP j, KP k)
        listed_before = tl.dot(pick_rows, taken, input_precision="ieee")  # (KP j, KP j')
        same_rank = (at[:, None] == at[None, :]) & (offs_k[None, :] < offs_k[:, None]) & found[None, :]
        repeat = tl.max(tl.where((listed_before > 0) | same_rank, 1, 0), axis=1)
        first = found & (repeat == 0)
        taken = tl.where(is_pick & found[None, :], 1.0, taken)
        keys = tl.where(is_pick, float("-inf"), keys)

        entry = entry_base + offs_k * K + r
        tl.store(key_ptr + entry, best, mask=slot_ok)
        tl.store(pos_ptr + entry, tl.where(found, blk * BLOCK_N + at, -1), mask=slot_ok)
        tl.store(first_ptr + entry, first.to(tl.int8), mask=slot_ok)
        tl.store(row_ptr + entry[:, None] * K + offs_k[None, :],
                 tl.where(found[:, None], pick_scores, float("-inf")),
                 mask=slot_ok[:, None] & slot_ok[None, :])

    in_union = tl.max(taken, axis=1) > 0
    slot_base = (row.to(tl.int64) * NB + blk) * K + offs_k
    tail = _column_lse(tl.where(in_union[:, None], float("-inf"), scores))
    tl.store(tail_ptr + slot_base, tail, mask=slot_ok)
    tl.store(blse_ptr + slot_base, _column_lse(scores), mask=slot_ok)


@triton.jit
def _slot_argmax_merge_kernel(
    key_ptr, pos_ptr, first_ptr, row_ptr, tail_ptr, blse_ptr,
    idx_ptr, logz_ptr, lse_ptr, NB,
    K: tl.constexpr, KS: tl.constexpr, EP: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program per row: greedy y_1..y_K over the block lists and exact remaining-set LSEs.

    Written without helper calls: Triton's CPU interpreter re-patches the language module on
    every @triton.jit call, so each helper (and each reduction) costs milliseconds there.
    """
    row = tl.program_id(0).to(tl.int64)
    offs_s = tl.arange(0, KS)
    offs_c = tl.arange(0, CHUNK)
    offs_e = tl.arange(0, EP)
    picked = tl.full((KS,), -1, dtype=tl.int32)
    logz = tl.full((KS,), float("nan"), dtype=tl.float32)
    lse = tl.full((KS,), float("nan"), dtype=tl.float32)
    for k in tl.static_range(K):
        # the picks of slots < k (positions and their blocks; -2 = none) are excluded from slot k
        earlier = (offs_s < k) & (picked >= 0)
        earlier_pos = tl.where(earlier, picked, -2)
        earlier_blk = tl.where(earlier, picked // BLOCK_N, -2)

        # ---- y_k: best non-excluded entry of the slot-k lists (ties → lower position)
        best_key = tl.full([], float("-inf"), dtype=tl.float32)
        best_pos = tl.full([], 2147483647, dtype=tl.int32)
        best_own = tl.full([], float("nan"), dtype=tl.float32)
        for c0 in range(0, NB, CHUNK):
            blocks = c0 + offs_c
            entry = ((row * NB + blocks[:, None]) * K + k) * K + offs_s[None, :]  # (CHUNK, KS)
            ok = (blocks < NB)[:, None] & (offs_s < K)[None, :]
            pos = tl.load(pos_ptr + entry, mask=ok, other=-1)
            key = tl.load(key_ptr + entry, mask=ok, other=float("-inf"))
            own = tl.load(row_ptr + entry * K + k, mask=ok, other=float("-inf"))
            hits = tl.max((pos[:, :, None] == earlier_pos[None, None, :]).to(tl.int32), axis=2)
            key = tl.where((hits > 0) | (pos < 0), float("-inf"), key)
            chunk_key = tl.max(key)
            chunk_pos = tl.min(tl.where((key == chunk_key) & (pos >= 0), pos, 2147483647))
            chunk_own = tl.max(tl.where(pos == chunk_pos, own, float("-inf")))
            better = (chunk_key > best_key) | ((chunk_key == best_key) & (chunk_pos < best_pos))
            best_key = tl.where(better, chunk_key, best_key)
            best_pos = tl.where(better, chunk_pos, best_pos)
            best_own = tl.where(better, chunk_own, best_own)
        got = best_key > float("-inf")
        picked = tl.where(offs_s == k, tl.where(got, best_pos, -1), picked)

        # ---- LSE over R_k: the whole-block LSE of every block holding no excluded candidate ...
        run_max = tl.full([], float("-inf"), dtype=tl.float32)
        run_sum = tl.full([], 0.0, dtype=tl.float32)
        for c0 in range(0, NB, CHUNK):
            blocks = c0 + offs_c
            value = tl.load(blse_ptr + (row * NB + blocks) * K + k, mask=blocks < NB,
                            other=float("-inf"))
            holds = tl.max((blocks[:, None] == earlier_blk[None, :]).to(tl.int32), axis=1)
            value = tl.where(holds > 0, float("-inf"), value)
            new_max = tl.maximum(run_max, tl.max(value))
            safe = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * tl.exp(run_max - safe) + tl.sum(tl.exp(value - safe))
            run_max = new_max
        # ... and each block holding excluded candidates (once): its tail + non-excluded union
        if k > 0:
            again = (earlier_blk[:, None] == earlier_blk[None, :]) & (offs_s[None, :] < offs_s[:, None])
            fix = (earlier_blk >= 0) & (tl.max(again.to(tl.int32), axis=1) == 0)  # (KS,)
            fix_base = row * NB + tl.maximum(earlier_blk, 0)
            fix_entry = fix_base[:, None] * (K * K) + offs_e[None, :]  # (KS, EP)
            fix_ok = fix[:, None] & (offs_e < K * K)[None, :]
            fix_pos = tl.load(pos_ptr + fix_entry, mask=fix_ok, other=-1)
            fix_first = tl.load(first_ptr + fix_entry, mask=fix_ok, other=0)
            union = tl.load(row_ptr + fix_entry * K + k, mask=fix_ok, other=float("-inf"))
            fix_hits = tl.max((fix_pos[:, :, None] == earlier_pos[None, None, :]).to(tl.int32), axis=2)
            union = tl.where((fix_first != 0) & (fix_hits == 0), union, float("-inf"))
            tail = tl.load(tail_ptr + fix_base * K + k, mask=fix, other=float("-inf"))
            new_max = tl.maximum(run_max, tl.maximum(tl.max(union), tl.max(tail)))
            safe = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = (run_sum * tl.exp(run_max - safe) + tl.sum(tl.exp(union - safe))
                       + tl.sum(tl.exp(tail - safe)))
            run_max = new_max
        lse_k = tl.where(run_sum > 0, run_max + tl.log(tl.where(run_sum > 0, run_sum, 1.0)),
                         float("-inf"))
        lse = tl.where(offs_s == k, lse_k, lse)
        logz = tl.where(offs_s == k, tl.where(got, best_own - lse_k, float("nan")), logz)

    out = row * K + offs_s
    slot_ok = offs_s < K
    tl.store(idx_ptr + out, picked.to(tl.int64), mask=slot_ok)
    tl.store(logz_ptr + out, logz.to(logz_ptr.dtype.element_ty), mask=slot_ok)
    tl.store(lse_ptr + out, lse, mask=slot_ok)


@triton.jit
def _slot_argmax_bwd_kernel(
    h_ptr, t_ptr, bias_ptr, mask_ptr, idx_ptr, lse_ptr, grad_ptr,
    dh_ptr, dbias_ptr, dt_part_ptr,
    N, D, NB,
    s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn, s_mb, s_mn,
    K: tl.constexpr, KP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DOT_FP32: tl.constexpr,
):
    """One pass over N: ds from the recomputed s, then dh (B, N, d), dbias (B, N) and the
    per-block partial dt (B, NB, K, d); ds[n, k] = g_k·(1[n = y_k] − exp(s[n, k] − lse_k)·1[n ∈ R_k]).
    """
    blk = tl.program_id(0)
    row = tl.program_id(1)
    offs_n = blk * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, KP)
    in_n = offs_n < N
    slot_ok = offs_k < K
    valid = tl.load(mask_ptr + row.to(tl.int64) * s_mb + offs_n * s_mn, mask=in_n, other=0) != 0
    scores = _block_scores(h_ptr, t_ptr, bias_ptr, row, offs_n, offs_k, in_n, D,
                           s_hb, s_hn, s_hd, s_tb, s_tk, s_td, s_bb, s_bn,
                           K, BLOCK_D, BLOCK_N, KP, DOT_FP32)
    small = row.to(tl.int64) * K + offs_k
    picks = tl.load(idx_ptr + small, mask=slot_ok, other=-1).to(tl.int32)
    lse = tl.load(lse_ptr + small, mask=slot_ok, other=0.0)
    grad = tl.load(grad_ptr + small, mask=slot_ok, other=0.0).to(tl.float32)

    chosen = (offs_n[:, None] == picks[None, :]) & slot_ok[None, :]  # (BLOCK_N, KP): n = y_j
    # n ∉ R_k iff n = y_j for some j < k: a one-hot matmul with the strict upper triangle (j < k)
    before = (offs_k[:, None] < offs_k[None, :]).to(tl.float32)  # (KP j, KP k)
    excluded = tl.dot(chosen.to(tl.float32), before, input_precision="ieee") > 0
    remaining = valid[:, None] & slot_ok[None, :] & (excluded == 0)
    prob = tl.where(remaining, tl.exp(tl.where(remaining, scores, 0.0) - lse[None, :]), 0.0)
    ds = grad[None, :] * (chosen.to(tl.float32) - prob)  # (BLOCK_N, KP), zero off the valid rows

    tl.store(dbias_ptr + row.to(tl.int64) * N + offs_n,
             tl.sum(ds, axis=1).to(dbias_ptr.dtype.element_ty), mask=in_n)
    h_rows = h_ptr + row.to(tl.int64) * s_hb + offs_n.to(tl.int64)[:, None] * s_hn
    dh_rows = dh_ptr + (row.to(tl.int64) * N + offs_n.to(tl.int64))[:, None] * D
    t_rows = t_ptr + row.to(tl.int64) * s_tb + offs_k[:, None] * s_tk
    dt_rows = dt_part_ptr + ((row.to(tl.int64) * NB + blk) * K + offs_k)[:, None] * D
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        t_tile = tl.load(t_rows + offs_d[None, :] * s_td, mask=slot_ok[:, None] & in_d[None, :],
                         other=0.0).to(tl.float32)  # (KP, BLOCK_D)
        dh = tl.dot(ds, t_tile, input_precision="ieee")
        tl.store(dh_rows + offs_d[None, :], dh.to(dh_ptr.dtype.element_ty),
                 mask=in_n[:, None] & in_d[None, :])
        h_tile = tl.load(h_rows + offs_d[None, :] * s_hd, mask=in_n[:, None] & in_d[None, :],
                         other=0.0).to(tl.float32)
        dt = tl.dot(tl.trans(ds), h_tile, input_precision="ieee")  # (KP, BLOCK_D)
        tl.store(dt_rows + offs_d[None, :], dt, mask=slot_ok[:, None] & in_d[None, :])


# ----------------------------------------------------------------------------------------------
# Triton path: ops and launch helpers
# ----------------------------------------------------------------------------------------------
def _triton_tiles(slots: int, dim: int) -> tuple[int, int]:
    """(KP, BLOCK_D): the padded slot count and the d-chunk, both ≥ 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(slots)), min(64, max(16, triton.next_power_of_2(dim)))


def _default_block_n(h: Tensor) -> int:
    return CUDA_BLOCK_N if h.is_cuda else INTERPRETER_BLOCK_N


def _merge_chunk(n_blocks: int, slot_pad: int, on_cuda: bool) -> int:
    """Blocks per step of the merge loops: its (CHUNK, KS, KS) exclusion tile stays ≤ 4096 elements
    on a GPU; 2 under the interpreter, so that CPU tests cross chunk boundaries."""
    if not on_cuda:
        return 2
    return max(2, min(triton.next_power_of_2(n_blocks), 4096 // (slot_pad * slot_pad)))


def _check_block_n(block_n: int) -> None:
    if block_n < 16 or block_n & (block_n - 1):
        raise ValueError(f"slot_argmax: block_n must be a power of two ≥ 16, got {block_n}")


def _triton_unsupported(h: Tensor, t: Tensor) -> Optional[str]:
    """Why the Triton path cannot take these inputs, or None."""
    if h.dtype not in TRITON_DTYPES:
        return f"the Triton path supports {TRITON_DTYPES}, got {h.dtype}"
    if t.shape[1] > TRITON_MAX_SLOTS:
        return f"the Triton path supports K ≤ {TRITON_MAX_SLOTS} slots, got K = {t.shape[1]}"
    return None


@torch.library.triton_op("ega::slot_argmax_triton", mutates_args=())
def _slot_argmax_triton_op(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, sample_seed: Optional[int], block_n: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton path: (idx (B, K) int64, logz (B, K) h.dtype, lse (B, K) fp32); see the kernels."""
    _check_block_n(block_n)
    reason = _triton_unsupported(h, t)
    if reason is not None:
        raise ValueError(f"slot_argmax: {reason}; use backend='torch'")
    batch, n, dim = h.shape
    slots = t.shape[1]
    if not _is_tracing(mask):
        _check_capacity(mask, slots)
    n_blocks = triton.cdiv(n, block_n)
    kp, block_d = _triton_tiles(slots, dim)
    part = (batch, n_blocks, slots, slots)
    keys = torch.empty(part, dtype=torch.float32, device=h.device)
    positions = torch.empty(part, dtype=torch.int32, device=h.device)
    first = torch.empty(part, dtype=torch.int8, device=h.device)
    union = torch.empty(part + (slots,), dtype=torch.float32, device=h.device)
    tail = torch.empty((batch, n_blocks, slots), dtype=torch.float32, device=h.device)
    block_lse = torch.empty((batch, n_blocks, slots), dtype=torch.float32, device=h.device)
    idx = torch.empty((batch, slots), dtype=torch.int64, device=h.device)
    logz = torch.empty((batch, slots), dtype=h.dtype, device=h.device)
    lse = torch.empty((batch, slots), dtype=torch.float32, device=h.device)
    if batch == 0:
        return idx, logz, lse
    sample = sample_seed is not None
    wrap_triton(_slot_argmax_fwd_kernel)[(n_blocks, batch)](
        h, t, bias, mask, keys, positions, first, union, tail, block_lse,
        n, dim, n_blocks, _stream_key(sample_seed) if sample else 0,
        h.stride(0), h.stride(1), h.stride(2), t.stride(0), t.stride(1), t.stride(2),
        bias.stride(0), bias.stride(1), mask.stride(0), mask.stride(1),
        K=slots, KP=kp, BLOCK_N=block_n, BLOCK_D=block_d, SAMPLE=sample,
        DOT_FP32=not h.is_cuda, num_warps=4,
    )
    slot_pad = max(2, triton.next_power_of_2(slots))
    wrap_triton(_slot_argmax_merge_kernel)[(batch,)](
        keys, positions, first, union, tail, block_lse, idx, logz, lse, n_blocks,
        K=slots, KS=slot_pad, EP=max(2, triton.next_power_of_2(slots * slots)),
        CHUNK=_merge_chunk(n_blocks, slot_pad, h.is_cuda), BLOCK_N=block_n, num_warps=4,
    )
    return idx, logz, lse


@torch.library.triton_op("ega::slot_argmax_triton_backward", mutates_args=())
def _slot_argmax_triton_backward_op(
    grad_logz: Tensor, h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, idx: Tensor, lse: Tensor,
    block_n: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton path backward: (dh (B, N, d), dt (B, K, d), dbias (B, N))."""
    _check_block_n(block_n)
    batch, n, dim = h.shape
    slots = t.shape[1]
    n_blocks = triton.cdiv(n, block_n)
    kp, block_d = _triton_tiles(slots, dim)
    dh = torch.empty((batch, n, dim), dtype=h.dtype, device=h.device)
    dbias = torch.empty((batch, n), dtype=bias.dtype, device=h.device)
    dt_partial = torch.empty((batch, n_blocks, slots, dim), dtype=torch.float32, device=h.device)
    if batch > 0:
        wrap_triton(_slot_argmax_bwd_kernel)[(n_blocks, batch)](
            h, t, bias, mask, idx.contiguous(), lse.contiguous(), grad_logz.contiguous(),
            dh, dbias, dt_partial, n, dim, n_blocks,
            h.stride(0), h.stride(1), h.stride(2), t.stride(0), t.stride(1), t.stride(2),
            bias.stride(0), bias.stride(1), mask.stride(0), mask.stride(1),
            K=slots, KP=kp, BLOCK_N=block_n, BLOCK_D=block_d, DOT_FP32=not h.is_cuda,
            num_warps=4,
        )
    return dh, dt_partial.sum(dim=1).to(t.dtype), dbias


def _setup_triton_context(ctx, inputs, output) -> None:
    h, t, bias, mask, _, block_n = inputs
    idx, _, lse = output
    ctx.save_for_backward(h, t, bias, mask, idx, lse)
    ctx.block_n = block_n
    ctx.mark_non_differentiable(idx, lse)


def _triton_backward(ctx, grad_idx, grad_logz, grad_lse):
    h, t, bias, mask, idx, lse = ctx.saved_tensors
    dh, dt, dbias = torch.ops.ega.slot_argmax_triton_backward(
        grad_logz, h, t, bias, mask, idx, lse, ctx.block_n
    )
    return dh, dt, dbias, None, None, None


_slot_argmax_triton_op.register_autograd(_triton_backward, setup_context=_setup_triton_context)


# ----------------------------------------------------------------------------------------------
# FLOP formula registration (FlopCounterMode counts each op by these)
# ----------------------------------------------------------------------------------------------
def _forward_flop_formula(h_shape, t_shape, *args, out_shape=None, **kwargs) -> int:
    batch, n, dim = h_shape
    return slot_argmax_flops(batch, n, t_shape[1], dim)


def _backward_flop_formula(grad_shape, h_shape, t_shape, *args, out_shape=None, **kwargs) -> int:
    batch, n, dim = h_shape
    return slot_argmax_backward_flops(batch, n, t_shape[1], dim)


register_flop_formula([torch.ops.ega.slot_argmax, torch.ops.ega.slot_argmax_triton])(
    _forward_flop_formula
)
register_flop_formula(
    [torch.ops.ega.slot_argmax_backward, torch.ops.ega.slot_argmax_triton_backward]
)(_backward_flop_formula)


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------
def slot_argmax(
    h: Tensor,
    t: Tensor,
    bias: Tensor,
    mask: Tensor,
    *,
    sample_seed: Optional[int] = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Greedy masked slot-wise argmax and its sequential log-probabilities (Eq. 17, SPEC §3.3).

    Args:
        h: (B, N, d) candidate states; t: (B, K, d) slot tokens; bias: (B, N) per-candidate score
            offset (e^{w_z}·q̂_n·b_n in Eq. 17); mask: (B, N) bool, True = valid candidate.
            h, t, bias share one float dtype and one device.
        sample_seed: None for the greedy allocation; an int in [0, 2^63) to sample each slot from
            the softmax over its remaining candidates (seeded Gumbel noise, same in every path).
        backend: "auto" (Triton on CUDA for fp16/bf16/fp32 and K ≤ 8, torch otherwise), "triton"
            or "torch".

    Returns:
        idx: (B, K) int64 chosen positions on the N axis, distinct per row; ties → lower index.
        logz: (B, K) in the input dtype: log z_{y_k,k} = s[y_k, k] − logsumexp over the remaining
            valid candidates of s[:, k], differentiable w.r.t. h, t, bias (the log-probability
            the policy gradient of Eq. 23 weights by the reward of Eq. 22).

    Raises:
        ValueError: bad shapes, a row with fewer than K valid candidates (named), bad seed.
        TypeError: bad dtypes.
    """
    _check_inputs(h, t, bias, mask)
    seed = _check_seed(sample_seed)
    chosen = resolve_backend(backend, h, t, bias, mask)
    reason = _triton_unsupported(h, t) if chosen == "triton" else None
    if reason is not None:
        if backend == "triton":
            raise ValueError(f"slot_argmax: {reason}; use backend='torch'")
        chosen = "torch"  # "auto" falls back to the torch path
    if chosen == "torch":
        idx, logz, _ = torch.ops.ega.slot_argmax(h, t, bias, mask, seed)
    else:
        idx, logz, _ = torch.ops.ega.slot_argmax_triton(h, t, bias, mask, seed, _default_block_n(h))
    return idx, logz

