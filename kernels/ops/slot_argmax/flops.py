"""FLOP formulas of :func:`slot_argmax` (matmul FLOPs over the N axis; the exponentials, the
greedy and the O(B·K) work are not counted): forward ``2·B·N·K·d``, backward ``6·B·N·K·d``."""
from __future__ import annotations


def slot_argmax_flops(batch: int, n: int, slots: int, dim: int) -> int:
    """Forward matmul FLOPs: the scores ``h·tᵀ``, ``2·B·N·K·d``."""
    return 2 * batch * n * slots * dim


def slot_argmax_backward_flops(batch: int, n: int, slots: int, dim: int) -> int:
    """Backward matmul FLOPs: recompute scores, ``dh = ds·t`` and ``dt = dsᵀ·h``: ``6·B·N·K·d``."""
    return 6 * batch * n * slots * dim


def forward_flop_formula(h_shape, t_shape, *args, out_shape=None, **kwargs) -> int:
    batch, n, dim = h_shape
    return slot_argmax_flops(batch, n, t_shape[1], dim)


def backward_flop_formula(grad_shape, h_shape, t_shape, *args, out_shape=None, **kwargs) -> int:
    batch, n, dim = h_shape
    return slot_argmax_backward_flops(batch, n, t_shape[1], dim)
