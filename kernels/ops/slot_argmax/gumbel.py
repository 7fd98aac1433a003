"""Seeded Gumbel noise of :func:`slot_argmax`'s sampling: a counter-based hash of (seed, b, n, k).

The torch functions here and the Triton kernel's ``_gumbel_tile`` compute bit-identical noise,
so both paths draw the same candidates for the same seed (sampling without replacement: the
argmax of score + Gumbel noise over each slot's remaining set).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .contract import check_seed

MASK32 = 0xFFFFFFFF
MIX_M1 = 0x7FEB352D  # lowbias32 multipliers (C. Wellons' integer hash prospector)
MIX_M2 = 0x846CA68B
SEED_SALT = 0x9E3779B9


def mix32_int(x: int) -> int:
    """lowbias32 on a Python int in [0, 2^32)."""
    x ^= x >> 16
    x = (x * MIX_M1) & MASK32
    x ^= x >> 15
    x = (x * MIX_M2) & MASK32
    x ^= x >> 16
    return x


def stream_key(sample_seed: int) -> int:
    """32-bit key of a seed in [0, 2^63): both halves of the seed go through the mixer."""
    low, high = sample_seed & MASK32, (sample_seed >> 32) & MASK32
    return mix32_int(low ^ mix32_int(high ^ SEED_SALT))


def mul32(x: Tensor, constant: int) -> Tensor:
    """(x · constant) mod 2^32 for int64 x in [0, 2^32) without int64 overflow (16-bit halves)."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & MASK32


def mix32_torch(x: Tensor) -> Tensor:
    """lowbias32 on an int64 tensor holding uint32 values."""
    x = x ^ (x >> 16)
    x = mul32(x, MIX_M1)
    x = x ^ (x >> 15)
    x = mul32(x, MIX_M2)
    return x ^ (x >> 16)


def gumbel_from_bits(bits: Tensor) -> Tensor:
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
    key = stream_key(check_seed(sample_seed))
    rows = torch.arange(batch, dtype=torch.int64, device=device)[:, None, None]
    cands = torch.arange(n, dtype=torch.int64, device=device)[None, :, None]
    cols = torch.arange(slots, dtype=torch.int64, device=device)[None, None, :]
    per_slot = mix32_torch(mix32_torch(key ^ rows) ^ cols)
    bits = mix32_torch(mix32_torch(per_slot ^ cands) ^ key)
    return gumbel_from_bits(bits)
