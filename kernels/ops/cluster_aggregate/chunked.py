"""The chunked torch path of :func:`cluster_aggregate` (EGA-V1 Eq. 11): the CPU production path.

Memory is linear in N: the forward streams over N in chunks with a running per-centroid max /
sum-exp (the flash-attention online softmax, normalised over N instead of over the keys) and keeps
only the per-centroid log-sum-exp; the backward recomputes P chunk by chunk from that LSE. At most
one (B, H, rows, N_c) chunk of logits lives at a time. These are plain tensor functions; the
``torch.library`` op around them (autograd, fake tensors, FLOP formula) is in :mod:`.op`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .contract import accumulation_dtype

# How many logits (B·H·rows·N_c elements) one chunk holds. Measured with
# `python -m egakit.perf.bench_cluster_aggregate --chunk-sweep` (shared 2-core AMD EPYC, 1 thread, fp32,
# B=1, H=4, N_c=128, d_h=32, N=10^5; median ms, methods interleaved): forward 918 / 1143 / 1077 ms
# at 512 / 1024 / 2048 rows against 1268 at 256 and 1229 at 8192; forward+backward 3546 / 3515 /
# 3467 ms against 3927 at 256 and 3961–3667 at 4096–8192. Flat from 2^18 to 2^20 elements (per-
# chunk op overhead below, cache misses above) within the machine's noise; 2^19 is the middle:
# 1024 rows there, 2 MiB of float32 per (B, H, rows, N_c) temporary.
CHUNK_ELEMENTS = 1 << 19


def default_chunk_rows(batch: int, heads: int, n_clusters: int) -> int:
    """Rows of N per chunk so that one (B, H, rows, N_c) logits chunk holds ~CHUNK_ELEMENTS."""
    return max(1, CHUNK_ELEMENTS // (batch * heads * n_clusters))


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


def chunked_forward(
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor, chunk_rows: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Streaming forward over chunks of N with a running per-centroid max / sum-exp.

    Returns (A_q, A_k, A_v) (B, H, N_c, d_h) in the input dtype and the per-centroid log-sum-exp
    (B, H, N_c) in the accumulation dtype (−inf for a row without valid candidates)."""
    batch, heads, n, head_dim = q.shape
    n_clusters = centroids.shape[1]
    acc_dtype = accumulation_dtype(q.dtype)
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


def chunked_backward(
    grad_a_q: Tensor, grad_a_k: Tensor, grad_a_v: Tensor,
    q: Tensor, k: Tensor, v: Tensor, centroids: Tensor, mask: Tensor,
    a_q: Tensor, a_k: Tensor, a_v: Tensor, log_sum_exp: Tensor, chunk_rows: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Streaming backward: P recomputed per chunk as exp(l − LSE), then dx = P dA_x,
    dP = Σ_x x dA_xᵀ, dl = P (dP − D) with D_c = Σ_x ⟨dA_x[c], A_x[c]⟩, dk += dl C / √d_h and
    dC += Σ_b dlᵀ k / √d_h. Returns dq, dk, dv (B, H, N, d_h) and dC (H, N_c, d_h)."""
    n, head_dim = q.shape[2], q.shape[3]
    acc_dtype = accumulation_dtype(q.dtype)
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
