"""egakit.kernels.cluster_aggregate (EGA-V1 Eq. 11, docs/design.md §3.1 / §4) on CPU.

The Triton kernels run in Triton's interpreter here (tests/conftest.py sets TRITON_INTERPRET=1
without CUDA), so their cases stay tiny: N in the tens, blocks of 16 rows. The chunked torch path
is checked against the dense definition and by gradcheck in float64; the Triton path against the
torch path, values and all four gradients. The N = 10^5 versions live in the GPU module.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from egakit.kernels import (
    cluster_aggregate,
    cluster_aggregate_backward_flops,
    cluster_aggregate_dense,
    cluster_aggregate_flops,
    cluster_aggregate_torch,
    triton_interpreting,
)
from egakit.kernels.ops.cluster_aggregate import cluster_aggregate_triton

needs_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() or triton_interpreting()),
    reason="the Triton path needs CUDA or TRITON_INTERPRET=1",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def make_inputs(batch, heads, n, head_dim, n_clusters, *, dtype=torch.float32, seed=0, valid=0.7):
    """Random q, k, v (B, H, N, d_h), centroids (H, N_c, d_h) and a (B, N) mask with ~`valid`
    of the candidates valid (at least the first one of every row)."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen, dtype=torch.float64) for _ in range(3))
    centroids = 1.5 * torch.randn(heads, n_clusters, head_dim, generator=gen, dtype=torch.float64)
    mask = torch.rand(batch, n, generator=gen) < valid
    if n:
        mask[:, 0] = True
    tensors = [x.to(dtype=dtype, device=DEVICE) for x in (q, k, v, centroids)]
    return (*tensors, mask.to(DEVICE))


def values_and_grads(fn, q, k, v, centroids, mask, seed=1):
    """Outputs of fn and the gradients of Σ ⟨G_x, A_x⟩ (random G_x) w.r.t. q, k, v, centroids."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v, centroids)]
    outputs = fn(*leaves, mask)
    gen = torch.Generator().manual_seed(seed)
    cotangents = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o) for o in outputs]
    grads = torch.autograd.grad(outputs, leaves, cotangents)
    return [o.detach() for o in outputs], list(grads)


def assert_close_all(actual, expected, *, tol, names=("a_q", "a_k", "a_v")):
    """Max error relative to the largest expected magnitude (robust for tiny P entries)."""
    for name, a, e in zip(names, actual, expected):
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        assert torch.isfinite(a).all(), f"{name}: non-finite values"
        scale = e.double().abs().max().clamp_min(1.0)
        error = (a.double() - e.double()).abs().max() / scale
        assert error <= tol, f"{name}: relative error {error:.3e} > {tol:.1e}"


GRAD_NAMES = ("dq", "dk", "dv", "dC")


def triton_fn(**tiling):
    return lambda q, k, v, c, m: cluster_aggregate_triton(q, k, v, c, m, **tiling)


# ----------------------------------------------------------------------------------------------
# chunked torch path vs the dense definition
# ----------------------------------------------------------------------------------------------
REFERENCE_CASES = {
    "odd": dict(shape=(2, 3, 37, 8, 5), chunk_rows=7),
    "n1": dict(shape=(1, 1, 1, 4, 3), chunk_rows=4),
    "nc_gt_d": dict(shape=(2, 2, 19, 3, 11), chunk_rows=19),
    "many_chunks": dict(shape=(3, 1, 25, 5, 4), chunk_rows=1),
}


@pytest.mark.parametrize("case", REFERENCE_CASES.values(), ids=REFERENCE_CASES.keys())
def test_torch_path_matches_dense_formula(case):
    q, k, v, centroids, mask = make_inputs(*case["shape"], dtype=torch.float64)
    if mask.shape[0] > 1:
        mask[-1] = False  # an all-masked row
    ref = lambda *a: cluster_aggregate_torch(*a, chunk_rows=case["chunk_rows"])
    out, grads = values_and_grads(ref, q, k, v, centroids, mask)
    dense_out, dense_grads = values_and_grads(cluster_aggregate_dense, q, k, v, centroids, mask)
    assert_close_all(out, dense_out, tol=1e-12)
    assert_close_all(grads, dense_grads, tol=1e-12, names=GRAD_NAMES)


def test_torch_path_is_independent_of_chunk_size():
    q, k, v, centroids, mask = make_inputs(2, 2, 23, 6, 5, dtype=torch.float64)
    outs = [values_and_grads(lambda *a: cluster_aggregate_torch(*a, chunk_rows=rows), q, k, v, centroids, mask)
            for rows in (1, 5, 23, 1000)]
    for out, grads in outs[1:]:
        assert_close_all(out, outs[0][0], tol=1e-13)
        assert_close_all(grads, outs[0][1], tol=1e-13, names=GRAD_NAMES)


@pytest.mark.parametrize("all_masked_row", [False, True])
def test_torch_path_gradcheck_float64(all_masked_row):
    q, k, v, centroids, mask = make_inputs(2, 2, 6, 3, 4, dtype=torch.float64, seed=3)
    if all_masked_row:
        mask[1] = False
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    fn = lambda *xs: cluster_aggregate_torch(*xs, mask, chunk_rows=4)
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-8)


def test_torch_path_saves_no_n_by_nc_tensor_for_backward():
    """Memory-linear in N: autograd keeps the inputs, outputs and the (B, H, N_c) LSE only."""
    batch, heads, n, head_dim, n_clusters = 1, 2, 300, 4, 8
    q, k, v, centroids, mask = make_inputs(batch, heads, n, head_dim, n_clusters)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        cluster_aggregate_torch(*leaves, mask, chunk_rows=16)
    budget = sum(x.numel() for x in (q, k, v, centroids, mask)) + 3 * batch * heads * n_clusters * head_dim
    budget += batch * heads * n_clusters
    assert sum(saved) <= budget
    assert max(saved) < batch * heads * n * n_clusters


# ----------------------------------------------------------------------------------------------
# Triton kernels (interpreter on CPU) vs the torch path
# ----------------------------------------------------------------------------------------------
TRITON_CASES = {
    # N = 1: a single block, a single row.
    "n1": dict(shape=(1, 1, 1, 16, 16), tiling={}, row_edit=None),
    # N not a multiple of 16, N_c != d_h, an all-masked row, several splits.
    "odd_all_masked": dict(shape=(2, 2, 45, 8, 5), tiling={}, row_edit="all_masked"),
    # N_c > d_h, neither a power of two; a row with one valid candidate.
    "non_pow2_one_valid": dict(shape=(2, 1, 33, 20, 33), tiling={}, row_edit="one_valid"),
    # One block per split: five partials to combine.
    "many_splits": dict(shape=(1, 1, 70, 32, 24), tiling=dict(block_n=16, split_blocks=1), row_edit=None),
    # The whole of N in one program.
    "one_split": dict(shape=(1, 1, 70, 32, 24), tiling=dict(block_n=16, split_blocks=8), row_edit=None),
}


@needs_triton
@pytest.mark.parametrize("case", TRITON_CASES.values(), ids=TRITON_CASES.keys())
def test_triton_matches_torch_path_float32(case):
    q, k, v, centroids, mask = make_inputs(*case["shape"], seed=5)
    if case["row_edit"] == "all_masked":
        mask[1] = False
    elif case["row_edit"] == "one_valid":
        mask[1] = False
        mask[1, 17] = True
    out, grads = values_and_grads(triton_fn(**case["tiling"]), q, k, v, centroids, mask)
    ref_out, ref_grads = values_and_grads(cluster_aggregate_torch, q, k, v, centroids, mask)
    assert_close_all(out, ref_out, tol=2e-5)
    assert_close_all(grads, ref_grads, tol=2e-5, names=GRAD_NAMES)
    if case["row_edit"] == "all_masked":
        assert all(bool((o[1] == 0).all()) for o in out)
        assert all(bool((g[1] == 0).all()) for g in grads[:3])


@needs_triton
def test_triton_bfloat16_within_tolerance():
    q, k, v, centroids, mask = make_inputs(2, 1, 40, 16, 12, dtype=torch.bfloat16, seed=7)
    out, grads = values_and_grads(cluster_aggregate_triton, q, k, v, centroids, mask)
    assert all(o.dtype == torch.bfloat16 for o in out) and all(g.dtype == torch.bfloat16 for g in grads)
    exact = [x.double() for x in (q, k, v, centroids)]
    dense_out, dense_grads = values_and_grads(cluster_aggregate_dense, *exact, mask)
    assert_close_all(out, dense_out, tol=2e-2)
    assert_close_all(grads, dense_grads, tol=3e-2, names=GRAD_NAMES)


def test_torch_path_bfloat16_within_tolerance():
    q, k, v, centroids, mask = make_inputs(2, 2, 40, 16, 12, dtype=torch.bfloat16, seed=7)
    out, grads = values_and_grads(cluster_aggregate_torch, q, k, v, centroids, mask)
    assert all(o.dtype == torch.bfloat16 for o in out) and all(g.dtype == torch.bfloat16 for g in grads)
    exact = [x.double() for x in (q, k, v, centroids)]
    dense_out, dense_grads = values_and_grads(cluster_aggregate_dense, *exact, mask)
    assert_close_all(out, dense_out, tol=1e-2)
    assert_close_all(grads, dense_grads, tol=2e-2, names=GRAD_NAMES)


# ----------------------------------------------------------------------------------------------
# Invariances (docs/design.md §3.1): candidate order, extra padding, garbage in padding
# ----------------------------------------------------------------------------------------------
PATHS = {
    "torch": lambda *a: cluster_aggregate_torch(*a, chunk_rows=8),
    "triton": pytest.param(triton_fn(), marks=needs_triton),
}


@pytest.mark.parametrize("fn", PATHS.values(), ids=PATHS.keys())
def test_invariant_to_permuting_candidates(fn):
    q, k, v, centroids, mask = make_inputs(2, 1, 30, 8, 6, seed=11)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    out, grads = values_and_grads(fn, q, k, v, centroids, mask)
    perm = [x[:, :, order] for x in (q, k, v)]
    perm_out, perm_grads = values_and_grads(fn, *perm, centroids, mask[:, order])
    assert_close_all(perm_out, out, tol=1e-5)
    assert_close_all([g[:, :, order] for g in grads[:3]] + grads[3:], perm_grads, tol=1e-5, names=GRAD_NAMES)


@pytest.mark.parametrize("fn", PATHS.values(), ids=PATHS.keys())
def test_invariant_to_extra_padding_even_non_finite(fn):
    q, k, v, centroids, mask = make_inputs(2, 1, 21, 8, 6, seed=13)
    out, grads = values_and_grads(fn, q, k, v, centroids, mask)
    junk = torch.full((2, 1, 12, 8), float("nan"), dtype=q.dtype, device=DEVICE)
    junk[:, :, ::2] = float("inf")
    padded = [torch.cat([x, junk], dim=2) for x in (q, k, v)]
    padded_mask = torch.cat([mask, torch.zeros(2, 12, dtype=torch.bool, device=DEVICE)], dim=1)
    pad_out, pad_grads = values_and_grads(fn, *padded, centroids, padded_mask)
    assert_close_all(pad_out, out, tol=1e-5)
    assert_close_all([g[:, :, :21] for g in pad_grads[:3]] + pad_grads[3:], grads, tol=1e-5, names=GRAD_NAMES)
    masked = ~padded_mask[:, None, :].expand(-1, q.shape[1], -1)  # (B, H, N + 12)
    for grad in pad_grads[:3]:
        assert bool((grad[masked] == 0).all()), "masked candidates must get exactly zero gradient"


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_empty_candidate_axis_gives_zeros(backend):
    q, k, v, centroids, mask = make_inputs(2, 2, 0, 4, 3)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    outputs = cluster_aggregate(*leaves, mask, backend=backend)
    assert all(o.shape == (2, 2, 3, 4) and bool((o == 0).all()) for o in outputs)
    sum(o.sum() for o in outputs).backward()
    assert bool((centroids.grad == 0).all())


# ----------------------------------------------------------------------------------------------
# Dispatch and input validation
# ----------------------------------------------------------------------------------------------
def test_auto_backend_on_cpu_is_the_torch_path():
    if torch.cuda.is_available():
        pytest.skip("auto picks Triton on CUDA")
    q, k, v, centroids, mask = make_inputs(1, 2, 9, 4, 3)
    auto = cluster_aggregate(q, k, v, centroids, mask)
    reference = cluster_aggregate_torch(q, k, v, centroids, mask)
    assert all(torch.equal(a, r) for a, r in zip(auto, reference))


def _replace(index, value):
    def edit(args):
        args = list(args)
        args[index] = value(args[index]) if callable(value) else value
        return args
    return edit


BAD_INPUTS = {
    "q_not_tensor": (_replace(0, [1.0]), TypeError, r"q must be a torch\.Tensor"),
    "q_3d": (_replace(0, lambda q: q[0]), ValueError, r"q must have shape \(B, H, N, d_h\)"),
    "k_shape": (_replace(1, lambda k: k[:, :, :-1]), ValueError, r"k must have the shape of q"),
    "v_shape": (_replace(2, lambda v: v[..., :-1]), ValueError, r"v must have the shape of q"),
    "centroids_heads": (_replace(3, lambda c: c[:1]), ValueError, r"centroids must have shape \(H, N_c, d_h\)"),
    "centroids_dim": (_replace(3, lambda c: c[..., :-1]), ValueError, r"centroids must have shape"),
    "mask_dtype": (_replace(4, lambda m: m.float()), TypeError, r"mask must be a bool tensor"),
    "mask_shape": (_replace(4, lambda m: m[:, :-1]), ValueError, r"mask must have shape \(B, N\)"),
    "int_inputs": (lambda a: [x.long() if i < 4 else x for i, x in enumerate(a)], TypeError, r"q must be one of"),
    "k_dtype": (_replace(1, lambda k: k.double()), TypeError, r"k must have the dtype of q"),
    "centroids_dtype": (_replace(3, lambda c: c.half()), TypeError, r"centroids must have the dtype of q"),
    "no_clusters": (_replace(3, lambda c: c[:, :0]), ValueError, r"N_c must be positive"),
    "device": (_replace(4, lambda m: m.to("meta")), ValueError, r"mask is on meta"),
}


@pytest.mark.parametrize("edit, error, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_invalid_inputs_raise_naming_the_argument(edit, error, message):
    args = edit(make_inputs(2, 2, 5, 4, 3))
    with pytest.raises(error, match=message):
        cluster_aggregate(*args, backend="torch")


def test_unknown_backend_and_triton_only_limits():
    args = make_inputs(1, 1, 5, 4, 3)
    with pytest.raises(ValueError, match="backend must be one of"):
        cluster_aggregate(*args, backend="cuda")
    if torch.cuda.is_available() or triton_interpreting():
        with pytest.raises(TypeError, match="use backend='torch' for float64"):
            cluster_aggregate(*make_inputs(1, 1, 5, 4, 3, dtype=torch.float64), backend="triton")
        with pytest.raises(ValueError, match="tile limits"):
            cluster_aggregate(*make_inputs(1, 1, 5, 64, 256), backend="triton")
        with pytest.raises(ValueError, match="block_n must be a power of two"):
            cluster_aggregate_triton(*args, block_n=24)
    with pytest.raises(ValueError, match="cluster_aggregate_torch: chunk_rows must be >= 1"):
        cluster_aggregate_torch(*args, chunk_rows=0)


# ----------------------------------------------------------------------------------------------
# torch.library: FLOP formulas, opcheck, torch.compile
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_flop_counter_counts_the_formulas(backend):
    shape = (2, 2, 20, 8, 5)
    q, k, v, centroids, mask = make_inputs(*shape)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    with FlopCounterMode(display=False) as forward_counter:
        outputs = cluster_aggregate(*leaves, mask, backend=backend)
    assert forward_counter.get_total_flops() == cluster_aggregate_flops(*shape) == 8 * 2 * 2 * 20 * 5 * 8
    with FlopCounterMode(display=False) as backward_counter:
        torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    assert backward_counter.get_total_flops() == cluster_aggregate_backward_flops(*shape) == 18 * 2 * 2 * 20 * 5 * 8


def test_opcheck_torch_ops():
    q, k, v, centroids, mask = make_inputs(2, 2, 9, 4, 3)
    leaves = [x.requires_grad_() for x in (q, k, v, centroids)]
    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.ega.cluster_aggregate.default, (*leaves, mask, 4), test_utils=checks)
    a_q, a_k, a_v, lse = torch.ops.ega.cluster_aggregate(q, k, v, centroids, mask, 4)
    grads = [torch.randn_like(a) for a in (a_q, a_k, a_v)]
    backward_args = (*grads, q, k, v, centroids, mask, a_q, a_k, a_v, lse, 4)
    torch.library.opcheck(torch.ops.ega.cluster_aggregate_backward.default, backward_args,
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph_matches_eager_on_the_torch_backend():
    torch._dynamo.reset()
    q, k, v, centroids, mask = make_inputs(2, 2, 13, 4, 3, seed=17)
    mask[1] = False

    def aggregate(q, k, v, centroids, mask):
        return cluster_aggregate(q, k, v, centroids, mask, backend="torch")

    compiled = torch.compile(aggregate, fullgraph=True)
    out, grads = values_and_grads(compiled, q, k, v, centroids, mask)
    eager_out, eager_grads = values_and_grads(aggregate, q, k, v, centroids, mask)
    assert_close_all(out, eager_out, tol=1e-6)
    assert_close_all(grads, eager_grads, tol=1e-6, names=GRAD_NAMES)
