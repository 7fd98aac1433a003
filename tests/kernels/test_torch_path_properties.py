"""The chunked torch paths equal the dense definitions on hypothesis-drawn shapes (values and
gradients, float64), as HSTU's op tests compare each path with its reference: any N, chunk size,
K ≤ valid candidates, all-masked rows for cluster_aggregate."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from egakit.kernels import (
    cluster_aggregate_dense,
    cluster_aggregate_torch,
    slot_argmax_dense,
    slot_argmax_torch,
)

EXAMPLES = 25
TOLERANCE = 1e-10


def grads_of(outputs, leaves, seed):
    gen = torch.Generator().manual_seed(seed)
    cotangents = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outputs]
    return torch.autograd.grad(outputs, leaves, cotangents)


@settings(max_examples=EXAMPLES, deadline=None)
@given(batch=st.integers(1, 3), heads=st.integers(1, 2), n=st.integers(1, 40), head_dim=st.integers(1, 6),
       n_clusters=st.integers(1, 7), chunk_rows=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_cluster_aggregate_torch_path_is_the_dense_definition(
    batch, heads, n, head_dim, n_clusters, chunk_rows, seed
):
    gen = torch.Generator().manual_seed(seed)
    leaves = [torch.randn(batch, heads, n, head_dim, generator=gen, dtype=torch.float64, requires_grad=True)
              for _ in range(3)]
    leaves.append(torch.randn(heads, n_clusters, head_dim, generator=gen, dtype=torch.float64, requires_grad=True))
    mask = torch.rand(batch, n, generator=gen) < 0.6  # rows may be all masked
    got = cluster_aggregate_torch(*leaves, mask, chunk_rows=chunk_rows)
    want = cluster_aggregate_dense(*leaves, mask)
    for a, b in zip((*got, *grads_of(got, leaves, seed)), (*want, *grads_of(want, leaves, seed))):
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data(), batch=st.integers(1, 3), n=st.integers(1, 40), dim=st.integers(1, 6),
       sample=st.booleans(), seed=st.integers(0, 2**16))
def test_slot_argmax_torch_path_is_the_dense_definition(data, batch, n, dim, sample, seed):
    gen = torch.Generator().manual_seed(seed)
    valid = torch.rand(batch, n, generator=gen) < 0.7
    valid[:, 0] = True
    slots = data.draw(st.integers(1, int(valid.sum(1).min())), label="K")
    leaves = [torch.randn(batch, n, dim, generator=gen, dtype=torch.float64, requires_grad=True),
              torch.randn(batch, slots, dim, generator=gen, dtype=torch.float64, requires_grad=True),
              torch.randn(batch, n, generator=gen, dtype=torch.float64, requires_grad=True)]
    sample_seed = seed if sample else None
    idx, logz = slot_argmax_torch(*leaves, valid, sample_seed=sample_seed)
    want_idx, want_logz = slot_argmax_dense(*leaves, valid, sample_seed=sample_seed)
    assert torch.equal(idx, want_idx)
    for a, b in zip((logz, *grads_of([logz], leaves, seed)), (want_logz, *grads_of([want_logz], leaves, seed))):
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)
