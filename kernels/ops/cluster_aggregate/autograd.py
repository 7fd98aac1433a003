"""The autograd context both :func:`cluster_aggregate` paths share (the torch op and the Triton op)."""
from __future__ import annotations

import torch
from torch import Tensor


# Autograd for both paths: ``register_autograd`` builds the op's torch.autograd.Function from
# this setup_context / backward pair. The forward runs outside autograd (no chunk temporaries are
# kept); only the inputs, the outputs and the (B, H, N_c) LSE are saved, and the backward is its
# own op (``..._backward``) so FlopCounterMode and torch.compile see it whole.
def setup_context(ctx, inputs, output) -> None:
    """Save q, k, v, C, mask, A_q, A_k, A_v and the LSE; the trailing int inputs are the tiling."""
    q, k, v, centroids, mask, *tiling = inputs
    a_q, a_k, a_v, log_sum_exp = output
    ctx.save_for_backward(q, k, v, centroids, mask, a_q, a_k, a_v, log_sum_exp)
    ctx.tiling = tiling
    ctx.mark_non_differentiable(log_sum_exp)


def incoming_grads(ctx, grad_a_q, grad_a_k, grad_a_v) -> list[Tensor]:
    """Replace absent output gradients by zeros (N_c × d_h each: cheap)."""
    outputs = ctx.saved_tensors[5:8]
    return [torch.zeros_like(a) if g is None else g for g, a in zip((grad_a_q, grad_a_k, grad_a_v), outputs)]
