"""The nn.Module wrappers ClusterAggregate and SlotArgmax: the functions' results, gradients
reaching the module's parameters, the backend switch, and clear errors."""
import pytest
import torch

from egakit.kernels import (
    ClusterAggregate,
    SlotArgmax,
    cluster_aggregate,
    cluster_aggregate_dense,
    slot_argmax,
    slot_argmax_dense,
    triton_interpreting,
)

needs_interpreter = pytest.mark.skipif(
    not triton_interpreting(), reason="the Triton path on CPU needs TRITON_INTERPRET=1"
)


def aggregate_inputs(batch=2, heads=2, n=33, head_dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen) for _ in range(3))
    mask = torch.rand(batch, n, generator=gen) < 0.7
    mask[:, 0] = True
    return q, k, v, mask


def slot_inputs(batch=2, n=30, slots=4, dim=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, n, dim, generator=gen)
    t = torch.randn(batch, slots, dim, generator=gen)
    bias = torch.randn(batch, n, generator=gen)
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[-1, 2 * n // 3:] = False
    return h, t, bias, mask


def test_cluster_aggregate_module_is_the_function_with_learnable_centroids():
    torch.manual_seed(0)
    layer = ClusterAggregate(heads=2, n_clusters=5, head_dim=4, backend="torch")
    assert [name for name, _ in layer.named_parameters()] == ["centroids"]
    assert layer.centroids.shape == (2, 5, 4)
    q, k, v, mask = aggregate_inputs()
    outputs = layer(q, k, v, mask)
    want = cluster_aggregate(q, k, v, layer.centroids.detach(), mask, backend="torch")
    assert all(torch.equal(o, w) for o, w in zip(outputs, want))
    dense = cluster_aggregate_dense(q, k, v, layer.centroids.detach(), mask)
    assert all(torch.allclose(o, w, atol=1e-5) for o, w in zip(outputs, dense))
    sum(o.square().sum() for o in outputs).backward()
    assert layer.centroids.grad is not None and layer.centroids.grad.abs().sum() > 0
    assert "n_clusters=5" in repr(layer) and "backend='torch'" in repr(layer)


def test_cluster_aggregate_module_state_dict_round_trip():
    first = ClusterAggregate(2, 3, 4)
    second = ClusterAggregate(2, 3, 4)
    assert not torch.equal(first.centroids, second.centroids)
    second.load_state_dict(first.state_dict())
    q, k, v, mask = aggregate_inputs(head_dim=4)
    assert all(torch.equal(a, b) for a, b in zip(first(q, k, v, mask), second(q, k, v, mask)))


def test_slot_argmax_module_is_the_function():
    module = SlotArgmax()
    assert list(module.parameters()) == []
    h, t, bias, mask = slot_inputs()
    t.requires_grad_()
    for seed in (None, 11):
        idx, logz = module(h, t, bias, mask, sample_seed=seed)
        want_idx, want_logz = slot_argmax(h, t, bias, mask, sample_seed=seed)
        assert torch.equal(idx, want_idx) and torch.equal(logz, want_logz)
        assert torch.equal(idx, slot_argmax_dense(h, t, bias, mask, sample_seed=seed)[0])
    logz.sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    assert "backend='auto'" in repr(module)


@pytest.mark.parametrize(
    "make", [lambda b: ClusterAggregate(1, 2, 4, backend=b), lambda b: SlotArgmax(backend=b)],
    ids=["ClusterAggregate", "SlotArgmax"],
)
def test_modules_reject_an_unknown_backend(make):
    with pytest.raises(ValueError, match="backend must be one of"):
        make("cuda")


def test_cluster_aggregate_module_rejects_empty_sizes():
    with pytest.raises(ValueError, match="must be positive"):
        ClusterAggregate(heads=2, n_clusters=0, head_dim=4)


@needs_interpreter
def test_modules_on_the_triton_backend_match_the_torch_backend():
    torch.manual_seed(1)
    layer = ClusterAggregate(1, 3, 16, backend="triton")
    reference = ClusterAggregate(1, 3, 16, backend="torch")
    reference.load_state_dict(layer.state_dict())
    q, k, v, mask = aggregate_inputs(batch=1, heads=1, n=20, head_dim=16)
    for got, want in zip(layer(q, k, v, mask), reference(q, k, v, mask)):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    h, t, bias, mask = slot_inputs(batch=1, n=20, slots=3)
    got = SlotArgmax(backend="triton")(h, t, bias, mask)
    want = SlotArgmax(backend="torch")(h, t, bias, mask)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], atol=2e-5, rtol=0)
