"""slot_argmax with many slots: K in {1, 5, 10, 16, 32} (issue 27 item 1).

The Triton kernels loop over slots (tl.range) instead of unrolling them, so they take K up to
``TRITON_MAX_SLOTS`` = 32. Here they run in Triton's interpreter (TRITON_INTERPRET=1, set by
conftest.py without CUDA) on tiny shapes: three blocks per row, a block size twice K where K > 8
so each block's per-slot lists leave a tail (the exact remaining-set LSE subtracts excluded
candidates from it), and a second row with few more valid candidates than slots. idx, logz and
the gradients of h, t and bias must equal the dense definition's, greedy and sampled. The torch
path takes any K: it is checked at K = 32 and K = 40 against the dense definition, the
plain-Python oracle of test_slot_argmax.py's kind and gradcheck.
"""
import math

import pytest
import torch

from egakit.kernels import slot_argmax, slot_argmax_dense, triton_interpreting
from egakit.kernels.ops.slot_argmax import TRITON_MAX_SLOTS

needs_interpreter = pytest.mark.skipif(
    not triton_interpreting(), reason="the Triton path on CPU needs TRITON_INTERPRET=1"
)
# K: (Triton block, N, valid candidates per row)
CASES = {
    1: (16, 37, [37, 20]),
    5: (16, 45, [45, 9]),
    10: (16, 45, [45, 13]),
    16: (32, 90, [90, 19]),
    32: (64, 150, [150, 35]),
}
DIM = 8
ATOL = 3e-5


def make_inputs(n, slots, valid, *, seed=0, dtype=torch.float32):
    """Random (h, t, bias, mask); masked candidates hold huge values so any leak shows."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(valid)
    h = torch.randn(batch, n, DIM, generator=gen)
    t = torch.randn(batch, slots, DIM, generator=gen) / math.sqrt(DIM)
    bias = torch.randn(batch, n, generator=gen)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    for b, count in enumerate(valid):
        mask[b, torch.randperm(n, generator=gen)[:count]] = True
    h = torch.where(mask[:, :, None], h, torch.full_like(h, 50.0))
    bias = torch.where(mask, bias, torch.full_like(bias, 1e4))
    return h.to(dtype), t.to(dtype), bias.to(dtype), mask


def run_with_grads(fn, h, t, bias, mask, sample_seed):
    """idx, logz and the gradients of Σ w·logz (fixed weights w) w.r.t. h, t and bias."""
    h, t, bias = (x.detach().clone().requires_grad_() for x in (h, t, bias))
    idx, logz = fn(h, t, bias, mask, sample_seed)
    weights = torch.linspace(-1.0, 1.5, logz.numel(), dtype=logz.dtype).reshape(logz.shape)
    (logz * weights).sum().backward()
    return idx, logz.detach(), h.grad, t.grad, bias.grad


def dense(h, t, bias, mask, sample_seed):
    return slot_argmax_dense(h, t, bias, mask, sample_seed=sample_seed)


def torch_path(h, t, bias, mask, sample_seed):
    return slot_argmax(h, t, bias, mask, sample_seed=sample_seed, backend="torch")


def triton_path(block_n):
    from egakit.kernels.ops.slot_argmax import triton_op

    return lambda h, t, bias, mask, sample_seed: triton_op.run_triton(h, t, bias, mask, sample_seed, block_n)


def assert_same(got, want, *, atol=ATOL):
    assert torch.equal(got[0], want[0]), f"idx {got[0].tolist()} != {want[0].tolist()}"
    for name, a, b in zip(("logz", "dh", "dt", "dbias"), got[1:], want[1:]):
        torch.testing.assert_close(a.double(), b.double(), atol=atol, rtol=1e-5, msg=name)


def test_the_triton_limit_is_at_least_32():
    assert TRITON_MAX_SLOTS >= 32


@needs_interpreter
@pytest.mark.parametrize("sample_seed", [None, 2**35 + 9], ids=["greedy", "sampled"])
@pytest.mark.parametrize("slots", list(CASES))
def test_triton_matches_dense_definition(slots, sample_seed):
    block_n, n, valid = CASES[slots]
    h, t, bias, mask = make_inputs(n, slots, valid, seed=slots)
    got = run_with_grads(triton_path(block_n), h, t, bias, mask, sample_seed)
    want = run_with_grads(dense, h, t, bias, mask, sample_seed)
    assert_same(got, want)
    for b in range(mask.shape[0]):
        assert len(set(got[0][b].tolist())) == slots and bool(mask[b, got[0][b]].all())
    assert not got[2][~mask].any() and not got[4][~mask].any()  # masked candidates: zero grad


@needs_interpreter
def test_triton_remaining_lse_is_exact_with_many_slots_and_a_dominant_winner():
    """Candidate 70 scores 30 above the rest in every slot (near-equal slot tokens): the
    remaining-set LSE of slots 2..K excludes almost all of the mass, without cancellation."""
    block_n, n, valid = CASES[16]
    h, t, bias, mask = make_inputs(n, 16, valid[:1], seed=3)
    t = (t[:, :1] + 0.01 * t).contiguous()
    bias[0, 70] = 30.0
    mask[0, 70] = True
    h[0, 70] = 0.1 * torch.randn(DIM, generator=torch.Generator().manual_seed(1))
    idx, logz = triton_path(block_n)(h, t, bias, mask, None)
    want_idx, want_logz = dense(h.double(), t.double(), bias.double(), mask, None)
    assert int(idx[0, 0]) == 70 and torch.equal(idx, want_idx)
    torch.testing.assert_close(logz.double(), want_logz, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sample_seed", [None, 4], ids=["greedy", "sampled"])
@pytest.mark.parametrize("slots", [32, TRITON_MAX_SLOTS + 8])
def test_torch_path_takes_any_k(slots, sample_seed):
    h, t, bias, mask = make_inputs(60, slots, [60, slots + 2], seed=slots)
    got = run_with_grads(torch_path, h, t, bias, mask, sample_seed)
    want = run_with_grads(dense, h, t, bias, mask, sample_seed)
    assert_same(got, want, atol=1e-5)


def test_torch_path_gradcheck_at_k_32():
    h, t, bias, mask = make_inputs(36, 32, [36], seed=8, dtype=torch.float64)
    h, t = h[..., :3].contiguous(), t[..., :3].contiguous()
    inputs = tuple(x.clone().requires_grad_() for x in (h, t, bias))
    assert torch.autograd.gradcheck(lambda *xs: torch_path(*xs, mask, None)[1], inputs, eps=1e-6, atol=1e-7)
