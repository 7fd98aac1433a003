"""The contract of :func:`slot_argmax` shared by every path: dtypes and input validation.

Shapes (EGA-V1 Eq. 17, docs/design.md §3.3)::

    h     : (B, N, d)  float16 / bfloat16 / float32 (float64: torch path only)   candidate states
    t     : (B, K, d)  same dtype                                                  slot tokens T
    bias  : (B, N)     same dtype
    mask  : (B, N)     bool                True = valid candidate
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MAX_SEED = (1 << 63) - 1


def check_inputs(h: Tensor, t: Tensor, bias: Tensor, mask: Tensor) -> None:
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


def check_seed(sample_seed: object) -> Optional[int]:
    """``None`` (greedy) or an int in [0, 2^63) (sampling)."""
    if sample_seed is None:
        return None
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int):
        raise TypeError(f"slot_argmax: sample_seed must be an int or None, got {sample_seed!r}")
    if not 0 <= sample_seed <= MAX_SEED:
        raise ValueError(f"slot_argmax: sample_seed must be in [0, 2^63), got {sample_seed}")
    return sample_seed


def check_capacity(mask: Tensor, slots: int) -> None:
    """K ≤ valid candidates in every row, else a ValueError naming the first bad row (host sync)."""
    counts = mask.sum(dim=1)
    short = torch.nonzero(counts < slots).flatten()
    if short.numel():
        row = int(short[0])
        raise ValueError(
            f"slot_argmax: row {row} has {int(counts[row])} valid candidates, fewer than the "
            f"K = {slots} slots to fill ({short.numel()} row(s) short: {short[:8].tolist()})"
        )


def is_tracing(x: Tensor) -> bool:
    """True under fake / functional tracing (torch.compile, export), where data is not available."""
    return is_fake(x) or torch.compiler.is_compiling()


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Triton path: the most slots the kernels take. They loop over slots (tl.range), so K only
# changes loop trip counts and the (K, K) per-block lists; tested up to 32 (EGA-V1 uses K = 5).
TRITON_MAX_SLOTS = 32


def triton_unsupported(h: Tensor, t: Tensor) -> Optional[str]:
    """Why the Triton path cannot take these inputs, or None."""
    if h.dtype not in TRITON_DTYPES:
        return f"the Triton path supports {TRITON_DTYPES}, got {h.dtype}"
    if t.shape[1] > TRITON_MAX_SLOTS:
        return f"the Triton path supports K ≤ {TRITON_MAX_SLOTS} slots, got K = {t.shape[1]}"
    return None
