"""egakit.kernels.slot_argmax on a GPU at the EGA shape (N = 10^5, K = 5, d = 128): the compiled Triton
kernels against the torch path, in float32 and bfloat16, plus torch.compile of the Triton op, and
K up to 32 (values, indices and gradients, greedy and sampled).

Skipped without CUDA. The CPU module (test_slot_argmax.py) covers the same contract at small N
with the Triton interpreter and a plain-Python oracle; here the sizes are the production ones.
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from egakit.kernels import slot_argmax

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEVICE = "cuda"
N, K, D = 100_000, 5, 128
VALID = [N, 61_234]  # two rows with different numbers of valid candidates
TOLERANCE = {  # (logz / lse atol, gradient rtol) per dtype
    torch.float32: (1e-4, 1e-3),
    torch.bfloat16: (7e-2, 3e-2),  # logz is returned in bf16: one ulp at |logz| ≈ 12 is 0.0625
}


@pytest.fixture(autouse=True)
def exact_fp32_matmul():
    """The torch path must score in true fp32 (no TF32) to be a reference for the kernels."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def make_inputs(dtype=torch.float32, seed=0, valid=VALID, n=N, slots=K):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    batch = len(valid)
    h = torch.randn(batch, n, D, device=DEVICE, generator=gen)
    t = torch.randn(batch, slots, D, device=DEVICE, generator=gen) / D**0.5
    bias = torch.randn(batch, n, device=DEVICE, generator=gen)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=DEVICE)
    for b, count in enumerate(valid):
        mask[b, torch.randperm(n, device=DEVICE, generator=gen)[:count]] = True
    h = torch.where(mask[:, :, None], h, torch.full_like(h, 50.0))  # masked values must not leak
    return h.to(dtype), t.to(dtype), bias.to(dtype), mask


def ops_with_lse(op, h, t, bias, mask, seed=None):
    """(idx, logz, lse) of the torch or Triton op (importing the Triton path registers its op)."""
    if op == "torch":
        return torch.ops.ega.slot_argmax(h, t, bias, mask, seed)
    from egakit.kernels.ops.slot_argmax import triton_op

    return torch.ops.ega.slot_argmax_triton(h, t, bias, mask, seed, triton_op.CUDA_BLOCK_N)


def run_with_grads(backend, h, t, bias, mask, **kwargs):
    h, t, bias = (x.detach().clone().requires_grad_() for x in (h, t, bias))
    idx, logz = slot_argmax(h, t, bias, mask, backend=backend, **kwargs)
    weights = torch.linspace(-1.0, 1.5, logz.numel(), device=DEVICE).reshape(logz.shape)
    (logz.float() * weights).sum().backward()
    return idx, logz.detach(), h.grad, t.grad, bias.grad


def assert_grads_close(got, want, rtol):
    for name, a, b in zip(("dh", "dt", "dbias"), got, want):
        scale = b.float().abs().max().item()
        torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=rtol * scale, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_torch_path_at_1e5(dtype):
    atol, rtol = TOLERANCE[dtype]
    h, t, bias, mask = make_inputs(dtype)
    got = ops_with_lse("triton", h, t, bias, mask)
    want = ops_with_lse("torch", h, t, bias, mask)
    assert torch.equal(got[0], want[0])
    assert bool(mask.gather(1, got[0]).all())
    torch.testing.assert_close(got[2], want[2].float(), atol=1e-4, rtol=0)  # fp32 remaining-set LSE
    torch.testing.assert_close(got[1].float(), want[1].float(), atol=atol, rtol=0)
    triton_grads = run_with_grads("triton", h, t, bias, mask)
    torch_grads = run_with_grads("torch", h, t, bias, mask)
    assert torch.equal(triton_grads[0], torch_grads[0])
    assert_grads_close(triton_grads[2:], torch_grads[2:], rtol)
    assert not triton_grads[2][~mask].any() and not triton_grads[4][~mask].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_sampling_picks_what_torch_picks_at_1e5(dtype):
    h, t, bias, mask = make_inputs(dtype, seed=1)
    greedy = ops_with_lse("torch", h, t, bias, mask)[0]
    for seed in (0, 123_456_789_012):
        got = ops_with_lse("triton", h, t, bias, mask, seed)
        want = ops_with_lse("torch", h, t, bias, mask, seed)
        assert torch.equal(got[0], want[0]), seed
        assert not torch.equal(got[0], greedy)
        torch.testing.assert_close(got[2], want[2].float(), atol=1e-4, rtol=0)
    assert torch.equal(ops_with_lse("triton", h, t, bias, mask, 0)[0],
                       ops_with_lse("triton", h, t, bias, mask, 0)[0])


def test_remaining_lse_exact_when_an_excluded_winner_dominates_at_1e5():
    h, t, bias, mask = make_inputs(seed=2)
    t = (t[:, :1] + 0.01 * t).contiguous()  # near-identical slot tokens
    bias[:, 4242] = 30.0 + h[:, 4242].abs().sum(-1)  # candidate 4242 dominates every slot
    mask[:, 4242] = True
    idx, logz, lse = ops_with_lse("triton", h, t, bias, mask)
    exact = ops_with_lse("torch", h.double(), t.double(), bias.double(), mask)
    assert (idx[:, 0] == 4242).all() and torch.equal(idx, exact[0])
    torch.testing.assert_close(logz.double(), exact[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(lse.double(), exact[2], atol=5e-4, rtol=0)


def test_ties_break_to_the_lower_index_across_blocks_at_1e5():
    gen = torch.Generator(device=DEVICE).manual_seed(3)
    h = torch.randint(-2, 3, (1, N, D), device=DEVICE, generator=gen).float()  # exact scores
    bias = torch.randint(-3, 4, (1, N), device=DEVICE, generator=gen).float()
    t = torch.randint(-1, 2, (1, 1, D), device=DEVICE, generator=gen).float().expand(1, K, D)
    tied = [70_001, 5, 300, 99_999, 64_000]
    h[0, tied] = h[0, 5].clone()
    bias[0, tied] = 1e3
    mask = torch.ones(1, N, dtype=torch.bool, device=DEVICE)
    for op in ("triton", "torch"):
        assert ops_with_lse(op, h, t.contiguous(), bias, mask)[0].tolist() == [sorted(tied)]


def test_torch_compile_of_the_triton_op_matches_eager():
    h, t, bias, mask = make_inputs(seed=4)

    def loss(h_, t_, bias_):
        idx, logz = slot_argmax(h_, t_, bias_, mask, backend="triton")
        return idx, (logz * torch.arange(1.0, K + 1, device=DEVICE)).sum()

    results = []
    for fn in (torch.compile(loss, fullgraph=True), loss):
        inputs = [x.clone().requires_grad_() for x in (h, t, bias)]
        idx, value = fn(*inputs)
        value.backward()
        results.append((idx, value.detach(), *[x.grad for x in inputs]))
    compiled, eager = results
    assert torch.equal(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1], atol=1e-4, rtol=1e-5)
    assert_grads_close(compiled[2:], eager[2:], 1e-4)


def test_flop_counter_and_auto_dispatch_on_cuda():
    h, t, bias, mask = make_inputs()
    h.requires_grad_()
    with FlopCounterMode(display=False) as counter:
        _, logz = slot_argmax(h, t, bias, mask)  # auto → Triton on CUDA
        logz.sum().backward()
    counts = counter.get_flop_counts()["Global"]
    batch = h.shape[0]
    assert counts[torch.ops.ega.slot_argmax_triton] == 2 * batch * N * K * D
    assert counts[torch.ops.ega.slot_argmax_triton_backward] == 6 * batch * N * K * D
    assert counter.get_total_flops() == 8 * batch * N * K * D


def test_fp16_and_float64_dispatch():
    h, t, bias, mask = make_inputs(torch.float16, valid=[N], seed=5)
    got = ops_with_lse("triton", h, t, bias, mask)
    want = ops_with_lse("torch", h, t, bias, mask)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[2], want[2].float(), atol=1e-4, rtol=0)
    idx, logz = slot_argmax(h.double(), t.double(), bias.double(), mask)  # auto → torch for fp64
    assert logz.dtype == torch.float64 and torch.equal(idx, want[0])


def test_capacity_error_names_the_row_on_cuda():
    h, t, bias, mask = make_inputs(valid=[N, 3], n=N)
    with pytest.raises(ValueError, match=r"row 1 has 3 valid candidates"):
        slot_argmax(h, t, bias, mask, backend="triton")


def test_memory_stays_linear_in_n():
    """Forward + backward at N = 10^5 allocate about dh (= h) plus small per-block partials."""
    h, t, bias, mask = make_inputs(valid=[N])
    h.requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    _, logz = slot_argmax(h, t, bias, mask, backend="triton")
    logz.sum().backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    assert extra < 1.5 * h.numel() * h.element_size(), extra


@pytest.mark.parametrize("slots", [1, 10, 16, 32])
@pytest.mark.parametrize("sample_seed", [None, 77])
def test_triton_many_slots_match_torch_path_at_1e5(slots, sample_seed):
    """K up to 32 (the kernels loop over slots): idx, lse, logz and the gradients, fp32."""
    h, t, bias, mask = make_inputs(seed=6, slots=slots)
    got = ops_with_lse("triton", h, t, bias, mask, sample_seed)
    want = ops_with_lse("torch", h, t, bias, mask, sample_seed)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[2], want[2].float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(got[1], want[1], atol=1e-4, rtol=0)
    triton_grads = run_with_grads("triton", h, t, bias, mask, sample_seed=sample_seed)
    torch_grads = run_with_grads("torch", h, t, bias, mask, sample_seed=sample_seed)
    assert torch.equal(triton_grads[0], torch_grads[0])
    assert_grads_close(triton_grads[2:], torch_grads[2:], TOLERANCE[torch.float32][1])
