"""egakit.kernels.cluster_aggregate on CUDA: the compiled Triton kernels at N = 10^5 (docs/design.md §4).

Skipped without CUDA. The same checks as the CPU module (values and the four gradients against
the chunked torch path, odd sizes, invariances, FLOP formulas) at production size, plus
``torch.compile`` of the Triton op (which cannot run under Triton's CPU interpreter) and the
memory bound (no N × N_c tensor in global memory).
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from egakit.kernels import (
    cluster_aggregate,
    cluster_aggregate_backward_flops,
    cluster_aggregate_flops,
    cluster_aggregate_torch,
)
from egakit.kernels.ops.cluster_aggregate import cluster_aggregate_triton

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

N_BIG = 100_000
GRAD_NAMES = ("dq", "dk", "dv", "dC")


def make_inputs(batch, heads, n, head_dim, n_clusters, *, dtype=torch.float32, seed=0, valid=0.9):
    """q, k, v (B, H, N, d_h), centroids (H, N_c, d_h), mask (B, N) on CUDA."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen, device="cuda") for _ in range(3))
    centroids = 1.5 * torch.randn(heads, n_clusters, head_dim, generator=gen, device="cuda")
    mask = torch.rand(batch, n, generator=gen, device="cuda") < valid
    mask[:, 0] = True
    return q.to(dtype), k.to(dtype), v.to(dtype), centroids.to(dtype), mask


def values_and_grads(fn, q, k, v, centroids, mask, seed=1):
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v, centroids)]
    outputs = fn(*leaves, mask)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    cotangents = [torch.randn(o.shape, generator=gen, device="cuda").to(o.dtype) for o in outputs]
    grads = torch.autograd.grad(outputs, leaves, cotangents)
    return [o.detach() for o in outputs], list(grads)


def assert_close_all(actual, expected, *, tol, names=("a_q", "a_k", "a_v")):
    for name, a, e in zip(names, actual, expected):
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        assert torch.isfinite(a).all(), f"{name}: non-finite values"
        scale = e.double().abs().max().clamp_min(1.0)
        error = (a.double() - e.double()).abs().max() / scale
        assert error <= tol, f"{name}: relative error {error:.3e} > {tol:.1e}"


def reference_fp32(q, k, v, centroids, mask):
    """The torch path on float32 copies: the yardstick for both dtypes."""
    return cluster_aggregate_torch(q.float(), k.float(), v.float(), centroids.float(), mask)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
def test_triton_matches_reference_at_n_1e5(dtype, tol):
    q, k, v, centroids, mask = make_inputs(2, 4, N_BIG, 32, 128, dtype=dtype)
    mask[1, N_BIG // 2:] = False  # padding in the second request
    out, grads = values_and_grads(cluster_aggregate, q, k, v, centroids, mask)
    assert all(o.dtype == dtype for o in out) and all(g.dtype == dtype for g in grads)
    ref_out, ref_grads = values_and_grads(reference_fp32, q, k, v, centroids, mask)
    assert_close_all(out, ref_out, tol=tol)
    assert_close_all(grads, ref_grads, tol=tol, names=GRAD_NAMES)


ODD_CASES = {
    "n1": ((1, 1, 1, 16, 16), {}, None),
    "odd_all_masked": ((2, 2, 45, 8, 5), {}, "all_masked"),
    "non_pow2_one_valid": ((2, 1, 33, 20, 33), {}, "one_valid"),
    "many_splits": ((1, 2, 1000, 32, 24), dict(block_n=16, split_blocks=1), None),
    "one_split": ((1, 2, 1000, 32, 24), dict(block_n=64, split_blocks=1000), None),
}


@pytest.mark.parametrize("shape, tiling, edit", ODD_CASES.values(), ids=ODD_CASES.keys())
def test_triton_odd_sizes_match_reference(shape, tiling, edit):
    q, k, v, centroids, mask = make_inputs(*shape, valid=0.7)
    if edit == "all_masked":
        mask[1] = False
    elif edit == "one_valid":
        mask[1] = False
        mask[1, 17] = True
    fn = lambda *a: cluster_aggregate_triton(*a, **tiling)
    out, grads = values_and_grads(fn, q, k, v, centroids, mask)
    ref_out, ref_grads = values_and_grads(cluster_aggregate_torch, q, k, v, centroids, mask)
    assert_close_all(out, ref_out, tol=2e-5)
    assert_close_all(grads, ref_grads, tol=2e-5, names=GRAD_NAMES)
    if edit == "all_masked":
        assert all(bool((o[1] == 0).all()) for o in out)
        assert all(bool((g[1] == 0).all()) for g in grads[:3])


def test_permutation_and_padding_invariance_at_n_1e5():
    q, k, v, centroids, mask = make_inputs(1, 4, N_BIG, 32, 128)
    out, grads = values_and_grads(cluster_aggregate, q, k, v, centroids, mask)
    order = torch.randperm(N_BIG, device="cuda")
    perm_out, perm_grads = values_and_grads(cluster_aggregate, *(x[:, :, order] for x in (q, k, v)),
                                            centroids, mask[:, order])
    assert_close_all(perm_out, out, tol=1e-4)
    assert_close_all(perm_grads, [g[:, :, order] for g in grads[:3]] + grads[3:], tol=1e-4, names=GRAD_NAMES)
    junk = torch.full((1, 4, 1000, 32), float("nan"), device="cuda")
    padded = [torch.cat([x, junk], dim=2) for x in (q, k, v)]
    padded_mask = torch.cat([mask, torch.zeros(1, 1000, dtype=torch.bool, device="cuda")], dim=1)
    pad_out, pad_grads = values_and_grads(cluster_aggregate, *padded, centroids, padded_mask)
    assert_close_all(pad_out, out, tol=1e-4)
    assert all(bool((g[:, :, N_BIG:] == 0).all()) for g in pad_grads[:3])


def test_triton_never_materialises_n_by_nc():
    """Forward extra memory ≪ one (B, H, N, N_c) float32 tensor; backward ≈ the three gradients."""
    batch, heads, n, head_dim, n_clusters = 1, 4, N_BIG, 32, 128
    q, k, v, centroids, mask = make_inputs(batch, heads, n, head_dim, n_clusters)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    input_bytes = 3 * q.numel() * q.element_size()
    n_by_nc_bytes = batch * heads * n * n_clusters * 4
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    outputs = cluster_aggregate(*leaves, mask)
    torch.cuda.synchronize()
    forward_extra = torch.cuda.max_memory_allocated() - base
    assert forward_extra < 0.25 * input_bytes < n_by_nc_bytes
    torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    torch.cuda.synchronize()
    total_extra = torch.cuda.max_memory_allocated() - base
    assert total_extra < 1.25 * input_bytes


def test_flop_counter_counts_the_formula_on_triton():
    shape = (1, 4, N_BIG, 32, 128)
    q, k, v, centroids, mask = make_inputs(*shape)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    with FlopCounterMode(display=False) as counter:
        outputs = cluster_aggregate(*leaves, mask)
    assert counter.get_total_flops() == cluster_aggregate_flops(*shape)
    with FlopCounterMode(display=False) as counter:
        torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    assert counter.get_total_flops() == cluster_aggregate_backward_flops(*shape)


def test_opcheck_triton_op():
    q, k, v, centroids, mask = make_inputs(2, 2, 300, 16, 20)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    checks = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_static")
    torch.library.opcheck(torch.ops.ega.cluster_aggregate_triton.default, (*leaves, mask, 0, 0), test_utils=checks)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)], ids=["fp32", "bf16"])
def test_torch_compile_of_the_triton_op_matches_eager(dtype, tol):
    torch._dynamo.reset()
    q, k, v, centroids, mask = make_inputs(2, 4, N_BIG, 32, 128, dtype=dtype)

    def aggregate(q, k, v, centroids, mask):
        a_q, a_k, a_v = cluster_aggregate(q, k, v, centroids, mask, backend="triton")
        return a_q * 2.0, a_k, a_v + 1.0

    compiled = torch.compile(aggregate, fullgraph=True)
    out, grads = values_and_grads(compiled, q, k, v, centroids, mask)
    eager_out, eager_grads = values_and_grads(aggregate, q, k, v, centroids, mask)
    assert_close_all(out, eager_out, tol=tol)
    assert_close_all(grads, eager_grads, tol=tol, names=GRAD_NAMES)
