"""Greedy masked slot-wise argmax with sequential log-probabilities (EGA-V1 Eq. 17,
docs/design.md §3.3 and §4).

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
(seed, b, n, k) computed by the same counter-based integer hash in every path (:func:`gumbel_noise`),
so the argmax draws each slot from the softmax over its remaining set (sampling without
replacement) and the paths pick the same candidates for the same seed. ``logz`` stays the exact
noise-free log-probability of the sampled sequence (what the policy gradient of Eq. 23 needs).

Gradients flow from ``logz`` to ``h``, ``t`` and ``bias`` (``idx`` is not differentiable)::

    ds[n, k] = g_k · (1[n = y_k] − softmax_{R_k}(s[:, k])[n] · 1[n ∈ R_k])
    dh = ds · t,   dt = dsᵀ · h,   dbias = Σ_k ds

``K > number of valid candidates`` in a row raises a ValueError naming the row.

Files, one job each:

* :mod:`.contract` — dtypes, the Triton path's limits and input validation; :mod:`.gumbel` — the
  seeded noise; :mod:`.flops` — the FLOP formulas;
* :mod:`.dense` — :func:`slot_argmax_dense`, the plain definition (autograd through the greedy);
* :mod:`.chunked` — the torch path (the CPU production path, memory-linear in N, any K);
* :mod:`.triton_kernels` — the Triton kernels (K ≤ 32); :mod:`.triton_op` — their launch and
  ``torch.library`` ops (both imported only when the Triton path runs);
* :mod:`.op` — the dispatch :func:`slot_argmax` and the torch op.
"""
from .contract import TRITON_MAX_SLOTS
from .dense import slot_argmax_dense
from .flops import slot_argmax_backward_flops, slot_argmax_flops
from .gumbel import gumbel_noise
from .op import slot_argmax, slot_argmax_torch

__all__ = [
    "TRITON_MAX_SLOTS",
    "gumbel_noise",
    "slot_argmax",
    "slot_argmax_backward_flops",
    "slot_argmax_dense",
    "slot_argmax_flops",
    "slot_argmax_torch",
]
