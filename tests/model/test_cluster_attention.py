"""Cluster attention (Eq. 7–14): against a dense re-derivation of docs/design.md §3.1, and its invariances."""
import math

import pytest
import torch

from egakit.model import BlockOptions, ClusterAttention
from egakit.model.cluster_attention import chunked_attention, merge_heads, split_heads

D, H, NC = 16, 2, 8
OPTIONS = BlockOptions(query_chunk=5, kernel_backend="torch")


def make_layer(query_gating: bool = True, seed: int = 0) -> ClusterAttention:
    torch.manual_seed(seed)
    layer = ClusterAttention(D, H, NC, query_gating=query_gating, options=OPTIONS)
    # Non-trivial running statistics so eval-mode Dice is not the identity-ish default.
    for dice in (layer.q_act, layer.kv_act, layer.out_act):
        with torch.no_grad():
            dice.running_mean.normal_(0, 0.3)
            dice.running_var.uniform_(0.5, 2.0)
            dice.alpha.uniform_(-0.5, 0.5)
    return layer.eval()


def random_inputs(B=2, N=13, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g)
    mask = torch.rand(B, N, generator=g) < 0.7
    mask[:, 0] = True
    return x, mask


def dense_surrogates(layer, q, k, v, mask_kv, mask_q=None):
    """docs/design.md §3.1 written out with the full N × N_c assignment matrix (small sizes only)."""
    dh = q.shape[-1]

    def aggregate(keys, xs, mask):
        logits = torch.einsum("bhnd,hcd->bhnc", keys, layer.centroids) / math.sqrt(dh)
        logits = logits.masked_fill(~mask[:, None, :, None], float("-inf"))
        p = torch.softmax(logits, dim=2)
        return [torch.einsum("bhnc,bhnd->bhcd", p, x) for x in xs]

    a_k, a_v = aggregate(k, [k, v], mask_kv)
    a_q = aggregate(k, [q], mask_kv)[0] if mask_q is None else aggregate(q, [q], mask_q)[0]
    if not layer.query_gating:
        return layer.key_proj(a_k), layer.value_proj(a_v)
    g = a_q @ a_k.transpose(-1, -2) / math.sqrt(dh)
    phi_k, phi_v = torch.sigmoid(layer.gate_k(g)), torch.sigmoid(layer.gate_v(g))
    keys = phi_k * layer.key_proj(a_q) + (1 - phi_k) * layer.key_proj(a_k)
    values = phi_v * layer.value_proj(a_q) + (1 - phi_v) * layer.value_proj(a_v)
    return keys, values


def dense_forward(layer, x_q, mask_q, x_kv=None, mask_kv=None):
    cross = x_kv is not None
    x_kv, mask_kv = (x_kv, mask_kv) if cross else (x_q, mask_q)
    q = split_heads(layer.q_act(layer.to_q(x_q), mask_q), H)
    k, v = layer.kv_act(layer.to_kv(x_kv), mask_kv).chunk(2, -1)
    k, v = split_heads(k, H), split_heads(v, H)
    keys, values = dense_surrogates(layer, q, k, v, mask_kv, mask_q if cross else None)
    attn = torch.softmax(q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ values
    out = layer.norm(x_q + layer.out_act(layer.out(merge_heads(attn)), mask_q))
    return out * mask_q.unsqueeze(-1)


@pytest.mark.parametrize("query_gating", [True, False])
def test_self_attention_matches_dense_derivation(query_gating):
    layer = make_layer(query_gating)
    x, mask = random_inputs()
    with torch.no_grad():
        torch.testing.assert_close(layer(x, mask), dense_forward(layer, x, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("query_gating", [True, False])
def test_cross_attention_matches_dense_derivation(query_gating):
    layer = make_layer(query_gating)
    x_q, mask_q = random_inputs(N=11, seed=2)
    x_kv, mask_kv = random_inputs(N=17, seed=3)
    with torch.no_grad():
        out = layer(x_q, mask_q, x_kv, mask_kv)
        assert out.shape == x_q.shape
        torch.testing.assert_close(out, dense_forward(layer, x_q, mask_q, x_kv, mask_kv), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_self_attention_invariant_to_order_and_padding(train):
    layer = make_layer()
    layer.train(train)
    x, mask = random_inputs(N=15)
    with torch.no_grad():
        ref = layer(x, mask)
        assert (ref[~mask] == 0).all()
        perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(layer(x[:, perm], mask[:, perm]), ref[:, perm], atol=1e-5, rtol=1e-5)
        extra = 9
        x_pad = torch.cat([x, 50 * torch.randn(x.shape[0], extra, D)], 1)
        mask_pad = torch.cat([mask, torch.zeros(x.shape[0], extra, dtype=torch.bool)], 1)
        torch.testing.assert_close(layer(x_pad, mask_pad)[:, : x.shape[1]], ref, atol=1e-5, rtol=1e-5)


def test_cross_attention_invariant_to_key_order_and_padding():
    layer = make_layer()
    x_q, mask_q = random_inputs(N=9, seed=2)
    x_kv, mask_kv = random_inputs(N=14, seed=4)
    with torch.no_grad():
        ref = layer(x_q, mask_q, x_kv, mask_kv)
        perm = torch.randperm(14, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(layer(x_q, mask_q, x_kv[:, perm], mask_kv[:, perm]), ref, atol=1e-5, rtol=1e-5)
        x_kv_pad = torch.cat([x_kv, torch.randn(2, 6, D)], 1)
        mask_kv_pad = torch.cat([mask_kv, torch.zeros(2, 6, dtype=torch.bool)], 1)
        torch.testing.assert_close(layer(x_q, mask_q, x_kv_pad, mask_kv_pad), ref, atol=1e-5, rtol=1e-5)


def test_without_query_gating_each_query_is_independent_of_the_others():
    layer = make_layer(query_gating=False)
    x_q, mask_q = random_inputs(N=10, seed=2)
    x_kv, mask_kv = random_inputs(N=12, seed=3)
    with torch.no_grad():
        ref = layer(x_q, mask_q, x_kv, mask_kv)
        changed = x_q.clone()
        changed[:, 1:] = torch.randn_like(changed[:, 1:])
        torch.testing.assert_close(layer(changed, mask_q, x_kv, mask_kv)[:, 0], ref[:, 0], atol=1e-5, rtol=1e-5)


def test_all_masked_keys_give_finite_output():
    layer = make_layer()
    x_q, mask_q = random_inputs(N=5)
    x_kv = torch.randn(2, 4, D)
    out = layer(x_q, mask_q, x_kv, torch.zeros(2, 4, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_chunked_attention_equals_one_shot():
    q, k, v = torch.randn(2, 2, 23, 4), torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4)
    torch.testing.assert_close(chunked_attention(q, k, v, 5), chunked_attention(q, k, v, 100))


def test_gradients_reach_every_parameter_and_not_padding():
    layer = make_layer()
    layer.train()
    x, mask = random_inputs()
    x.requires_grad_(True)
    layer(x, mask).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert (x.grad[~mask] == 0).all(), "padding rows must get no gradient"
