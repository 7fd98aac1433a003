"""The chunked torch path of :func:`slot_argmax` (EGA-V1 Eq. 17): the CPU production path.

Memory is linear in N: the scores are a (B, K, N) tensor (bf16 / fp16 inputs are upcast per
chunk of ``CHUNK_ROWS`` candidates, so no N × d float32 copy of h), the greedy keeps O(B·N) per
slot, and the backward is analytic (no autograd graph over the K greedy steps)::

    ds[n, k] = g_k · (1[n = y_k] − softmax_{R_k}(s[:, k])[n] · 1[n ∈ R_k])
    dh = ds · t,   dt = dsᵀ · h,   dbias = Σ_k ds

Any K works. These are plain tensor functions; the ``torch.library`` op around them (autograd,
fake tensors, FLOP formula) is in :mod:`.op`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .contract import accumulation_dtype
from .gumbel import gumbel_noise

# Rows of N scored per chunk when the inputs must be upcast (bf16/fp16 → fp32), so the upcast
# copy of h is at most CHUNK_ROWS × d, not N × d.
CHUNK_ROWS = 4096


def scores_of(h: Tensor, t: Tensor, bias: Tensor) -> Tensor:
    """s = t·hᵀ + bias, (B, K, N) in the accumulation dtype (slot-major: each slot's scores are a
    contiguous row for the per-slot masking and reductions); bf16/fp16 are upcast per N-chunk."""
    # The product runs candidate-major, (N, d) @ (d, K), and is then transposed: measured here
    # (2-core AMD EPYC, 1 thread, B = 1, N = 10^5, K = 5, d = 128, float32) 9.9 ms against
    # 14.4 ms for the slot-major t @ hᵀ, which hands the BLAS a transposed N-long operand.
    acc = accumulation_dtype(h.dtype)
    t_acc_t = t.to(acc).transpose(1, 2)
    if h.dtype == acc:
        candidate_major = torch.matmul(h, t_acc_t)
    else:
        candidate_major = torch.cat(
            [torch.matmul(h[:, start:start + CHUNK_ROWS].to(acc), t_acc_t)
             for start in range(0, h.shape[1], CHUNK_ROWS)],
            dim=1,
        )
    return (candidate_major + bias.to(acc)[:, :, None]).transpose(1, 2).contiguous()


def greedy(scores: Tensor, keys: Optional[Tensor], mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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


def selection_keys(scores: Tensor, sample_seed: Optional[int]) -> Optional[Tensor]:
    """(B, K, N) scores + the seeded Gumbel noise, or None without a seed."""
    if sample_seed is None:
        return None
    batch, slots, n = scores.shape
    noise = gumbel_noise(sample_seed, batch, n, slots, device=scores.device).transpose(1, 2)
    return scores.detach() + noise.to(scores.dtype)


def chunked_forward(
    h: Tensor, t: Tensor, bias: Tensor, mask: Tensor, sample_seed: Optional[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """(idx (B, K) int64, logz (B, K), lse (B, K)) in the accumulation dtype, outside autograd:
    the (B, K, N) scores, the seeded keys when sampling, then the greedy over slots."""
    with torch.no_grad():
        scores = scores_of(h, t, bias)
        return greedy(scores, selection_keys(scores, sample_seed), mask)


def pick_rank(idx: Tensor, n: int) -> Tensor:
    """(B, N) int64: the slot at which candidate n was picked, K if never."""
    batch, slots = idx.shape
    rank = torch.full((batch, n), slots, dtype=torch.int64, device=idx.device)
    order = torch.arange(slots, device=idx.device).expand(batch, slots)
    return rank.scatter(1, idx, order)


def chunked_backward(grad_logz, h, t, bias, mask, idx, lse):
    """(dh, dt, dbias) of logz (ds as in the module docstring), with (B, K, N) temporaries.

    float32 / float64 inputs: two batched matmuls write dh and dt directly. bf16 / fp16: dh and
    dt are accumulated per N-chunk, so the float32 copies of h and dh stay one chunk long.
    """
    acc = accumulation_dtype(h.dtype)
    slots = t.shape[1]
    t_acc = t.to(acc)
    rank = pick_rank(idx, h.shape[1])[:, None, :]
    slot_ids = torch.arange(slots, device=h.device)[None, :, None]
    remaining = mask[:, None, :] & (rank >= slot_ids)
    scores = scores_of(h, t, bias)
    prob = torch.where(remaining, torch.exp(scores - lse.to(acc)[:, :, None]), 0.0)
    ds = grad_logz.to(acc)[:, :, None] * ((rank == slot_ids).to(acc) - prob)  # (B, K, N)
    dbias = ds.sum(dim=1).to(bias.dtype)
    if h.dtype == acc:
        return torch.matmul(ds.transpose(1, 2), t_acc), torch.bmm(ds, h).to(t.dtype), dbias
    dh = torch.empty_like(h)
    dt = torch.zeros(t.shape, dtype=acc, device=h.device)
    for start in range(0, h.shape[1], CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        dh[:, rows] = torch.matmul(ds[:, :, rows].transpose(1, 2), t_acc)
        dt += torch.bmm(ds[:, :, rows], h[:, rows].to(acc))
    return dh, dt.to(t.dtype), dbias
