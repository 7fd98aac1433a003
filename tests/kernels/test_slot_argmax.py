"""egakit.kernels.slot_argmax (EGA-V1 Eq. 17, docs/design.md §3.3 / §4) on CPU.

The Triton path runs in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py without
CUDA) with 16-candidate blocks, so small N already spans several blocks and merge chunks. Every
path is checked against the dense definition and a plain-Python float64 oracle: idx, logz and
gradients, odd sizes, ties, sampling, the cancellation-prone case, invariances, errors, and the
torch.library integration (FlopCounterMode, torch.compile).
"""
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from egakit.kernels import (
    gumbel_noise,
    slot_argmax,
    slot_argmax_dense,
    slot_argmax_flops,
    triton_interpreting,
)
from egakit.kernels.ops.slot_argmax import TRITON_MAX_SLOTS, chunked, gumbel

needs_interpreter = pytest.mark.skipif(
    not triton_interpreting(), reason="the Triton path on CPU needs TRITON_INTERPRET=1"
)
BLOCK = 16  # Triton block for the interpreter tests: several blocks at N in the tens


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def make_inputs(batch, n, slots, dim, *, valid=None, dtype=torch.float32, seed=0):
    """Random (h, t, bias, mask); ``valid[b]`` = number of valid candidates of row b (random ones).

    Masked candidates hold huge values, so any leak of a masked candidate into a result shows.
    """
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, n, dim, generator=gen)
    t = torch.randn(batch, slots, dim, generator=gen) / math.sqrt(dim)
    bias = torch.randn(batch, n, generator=gen)
    mask = torch.ones(batch, n, dtype=torch.bool)
    for b, count in enumerate(valid or []):
        order = torch.randperm(n, generator=gen)
        mask[b, order[count:]] = False
    h = torch.where(mask[:, :, None], h, torch.full_like(h, 50.0))
    bias = torch.where(mask, bias, torch.full_like(bias, 1e4))
    return h.to(dtype), t.to(dtype), bias.to(dtype), mask


def triton_op(h, t, bias, mask, sample_seed=None, block_n=BLOCK):
    """(idx, logz) of the Triton op with an explicit block size (its module registers the op)."""
    from egakit.kernels.ops.slot_argmax import triton_op as triton_path

    return triton_path.run_triton(h, t, bias, mask, sample_seed, block_n)


def torch_op(h, t, bias, mask, sample_seed=None):
    return slot_argmax(h, t, bias, mask, sample_seed=sample_seed, backend="torch")


def dense(h, t, bias, mask, sample_seed=None):
    """The dense definition (autograd through the greedy)."""
    return slot_argmax_dense(h, t, bias, mask, sample_seed=sample_seed)


def run_with_grads(fn, h, t, bias, mask, **kwargs):
    """idx, logz and the gradients of Σ w·logz (fixed weights w) w.r.t. h, t, bias."""
    h, t, bias = (x.detach().clone().requires_grad_() for x in (h, t, bias))
    idx, logz = fn(h, t, bias, mask, **kwargs)
    weights = torch.linspace(-1.0, 1.5, logz.numel()).reshape(logz.shape)
    (logz.float() * weights).sum().backward()
    return idx, logz.detach(), h.grad, t.grad, bias.grad


def python_scores(h, t, bias, b, k):
    """{n: s[b, n, k]} for every n, in float64 with exactly rounded dot products."""
    rows, token, offs = h[b].double().tolist(), t[b, k].double().tolist(), bias[b].double().tolist()
    return [math.fsum(x * y for x, y in zip(row, token)) + off for row, off in zip(rows, offs)]


def python_lse(values):
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def oracle(h, t, bias, mask, noise=None):
    """Plain-Python float64 greedy: (idx (B, K) int64, logz (B, K) float64)."""
    batch, slots = h.shape[0], t.shape[1]
    idx, logz = [], []
    for b in range(batch):
        remaining = [n for n in range(h.shape[1]) if mask[b, n]]
        picks, logs = [], []
        for k in range(slots):
            s = python_scores(h, t, bias, b, k)
            key = {n: s[n] + (float(noise[b, n, k]) if noise is not None else 0.0) for n in remaining}
            top = max(key.values())
            pick = min(n for n in remaining if key[n] == top)
            logs.append(s[pick] - python_lse([s[n] for n in remaining]))
            picks.append(pick)
            remaining.remove(pick)
        idx.append(picks)
        logz.append(logs)
    return torch.tensor(idx), torch.tensor(logz, dtype=torch.float64)


def oracle_log_prob(h, t, bias, mask, idx):
    """float64 log p_k(y_k | y_<k) of a given sequence (the noise-free logz of a sample)."""
    out = torch.empty(idx.shape, dtype=torch.float64)
    for b in range(idx.shape[0]):
        remaining = [n for n in range(h.shape[1]) if mask[b, n]]
        for k in range(idx.shape[1]):
            s = python_scores(h, t, bias, b, k)
            pick = int(idx[b, k])
            assert pick in remaining
            out[b, k] = s[pick] - python_lse([s[n] for n in remaining])
            remaining.remove(pick)
    return out


def assert_close_results(got, want, *, atol, rtol=0.0):
    """Compare (idx, logz, dh, dt, dbias) tuples: idx exactly, the rest within tolerance."""
    assert torch.equal(got[0], want[0]), f"idx {got[0].tolist()} != {want[0].tolist()}"
    for name, a, b in zip(("logz", "dh", "dt", "dbias"), got[1:], want[1:]):
        torch.testing.assert_close(a.double(), b.double(), atol=atol, rtol=rtol, msg=name)


# ----------------------------------------------------------------------------------------------
# dense definition and torch path vs the oracle
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_reference_and_torch_op_match_python_oracle(dtype, atol):
    h, t, bias, mask = make_inputs(3, 11, 4, 5, valid=[11, 6, 4], dtype=dtype)
    want_idx, want_logz = oracle(h, t, bias, mask)
    for fn in (dense, torch_op):
        idx, logz = fn(h, t, bias, mask)
        assert idx.dtype == torch.int64 and logz.dtype == dtype
        assert torch.equal(idx, want_idx)
        torch.testing.assert_close(logz.double(), want_logz, atol=atol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("sample_seed", [None, 3])
def test_torch_op_matches_reference_values_and_gradients(dtype, sample_seed):
    h, t, bias, mask = make_inputs(2, 30, 4, 12, valid=[30, 9], dtype=dtype)
    got = run_with_grads(torch_op, h, t, bias, mask, sample_seed=sample_seed)
    want = run_with_grads(dense, h, t, bias, mask, sample_seed=sample_seed)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert_close_results(got, want, atol=tol, rtol=tol)


def test_torch_path_chunked_upcast_matches_unchunked(monkeypatch):
    h, t, bias, mask = make_inputs(2, 40, 3, 8, valid=[40, 21], dtype=torch.bfloat16)
    whole = run_with_grads(torch_op, h, t, bias, mask)
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 7)
    assert_close_results(run_with_grads(torch_op, h, t, bias, mask), whole, atol=1e-6)
    assert_close_results(run_with_grads(dense, h, t, bias, mask), whole, atol=1e-6)


@pytest.mark.parametrize("path", ["dense", "torch_op"])
@pytest.mark.parametrize("sample_seed", [None, 11])
def test_gradcheck_float64(path, sample_seed):
    h, t, bias, mask = make_inputs(2, 7, 3, 3, valid=[7, 4], dtype=torch.float64)
    fn = dense if path == "dense" else torch_op

    def logz_of(h_, t_, bias_):
        return fn(h_, t_, bias_, mask, sample_seed)[1]

    inputs = tuple(x.clone().requires_grad_() for x in (h, t, bias))
    assert torch.autograd.gradcheck(logz_of, inputs, eps=1e-6, atol=1e-7)


def test_logz_is_the_sequential_log_probability_and_idx_is_a_valid_set():
    h, t, bias, mask = make_inputs(4, 25, 5, 6, valid=[25, 5, 12, 8])
    idx, logz = torch_op(h, t, bias, mask)
    for b in range(4):
        assert len(set(idx[b].tolist())) == 5
        assert bool(mask[b, idx[b]].all())
    assert bool((logz <= 0).all())
    torch.testing.assert_close(logz.double(), oracle_log_prob(h, t, bias, mask, idx), atol=2e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# Triton (interpreter) vs the dense definition
# ----------------------------------------------------------------------------------------------
TRITON_CASES = {
    # name: (B, N, K, d, valid per row)
    "n_not_multiple_of_block": (2, 37, 3, 24, [37, 20]),
    "one_candidate_one_slot": (1, 1, 1, 16, [1]),
    "k_equals_n": (1, 4, 4, 20, [4]),
    "d_not_pow2_two_d_chunks": (1, 40, 2, 80, [33]),
    "k5_rows_with_different_valid_counts": (2, 40, 5, 12, [40, 5]),
}


@needs_interpreter
@pytest.mark.parametrize("case", list(TRITON_CASES))
def test_triton_matches_reference_and_oracle(case):
    batch, n, slots, dim, valid = TRITON_CASES[case]
    h, t, bias, mask = make_inputs(batch, n, slots, dim, valid=valid, seed=len(case))
    got = run_with_grads(triton_op, h, t, bias, mask)
    want = run_with_grads(dense, h, t, bias, mask)
    assert_close_results(got, want, atol=2e-5, rtol=1e-5)
    oracle_idx, oracle_logz = oracle(h, t, bias, mask)
    assert torch.equal(got[0], oracle_idx)
    torch.testing.assert_close(got[1].double(), oracle_logz, atol=2e-5, rtol=0)


@needs_interpreter
def test_triton_handles_strided_inputs():
    h, t, bias, mask = make_inputs(2, 21, 2, 18, valid=[21, 8], seed=6)
    strided = (
        h.transpose(1, 2).contiguous().transpose(1, 2),  # d-major: stride (N·d, 1, N)
        t.transpose(1, 2).contiguous().transpose(1, 2),
        bias.T.contiguous().T,  # stride (1, B)
        mask.T.contiguous().T,
    )
    assert not strided[0].is_contiguous() and not strided[2].is_contiguous()
    got = run_with_grads(triton_op, *strided)
    assert_close_results(got, run_with_grads(dense, h, t, bias, mask), atol=2e-5, rtol=1e-5)


def tie_inputs():
    """Integer-valued data (exact scores in every path): candidates 3, 5, 20, 35 tie for the top of
    every slot (duplicates within block 0 and across blocks 0, 1, 2 at BLOCK = 16)."""
    gen = torch.Generator().manual_seed(5)
    n, dim, slots = 40, 6, 3
    h = torch.randint(-2, 3, (1, n, dim), generator=gen).float()
    bias = torch.randint(-3, 4, (1, n), generator=gen).float()
    for copy in (5, 20, 35):
        h[0, copy] = h[0, 3]
    bias[0, [3, 5, 20, 35]] = 40.0
    t = torch.randint(-1, 2, (1, 1, dim), generator=gen).float().expand(1, slots, dim).contiguous()
    return h, t, bias, torch.ones(1, n, dtype=torch.bool)


@pytest.mark.parametrize("path", ["dense", "torch_op", pytest.param("triton", marks=needs_interpreter)])
def test_ties_break_to_the_lower_index(path):
    h, t, bias, mask = tie_inputs()
    fn = {"dense": dense, "torch_op": torch_op, "triton": triton_op}[path]
    idx, logz = fn(h, t, bias, mask)
    assert idx.tolist() == [[3, 5, 20]]
    assert oracle(h, t, bias, mask)[0].tolist() == [[3, 5, 20]]
    # four equal scores dominate: log(1/4), log(1/3), log(1/2) up to the small rest
    torch.testing.assert_close(logz.double(), oracle(h, t, bias, mask)[1], atol=1e-5, rtol=0)


@needs_interpreter
def test_triton_bf16_close_to_reference():
    h, t, bias, mask = make_inputs(2, 37, 3, 24, valid=[37, 14], dtype=torch.bfloat16, seed=9)
    got = run_with_grads(triton_op, h, t, bias, mask)
    want = run_with_grads(dense, h, t, bias, mask)
    assert got[1].dtype == torch.bfloat16 and got[2].dtype == torch.bfloat16
    assert_close_results(got, want, atol=2e-2, rtol=2e-2)


@needs_interpreter
def test_public_function_dispatch_on_cpu():
    h, t, bias, mask = make_inputs(1, 70, 3, 10, valid=[61], seed=4)
    want = dense(h, t, bias, mask)
    auto = slot_argmax(h, t, bias, mask)  # CPU tensors: the torch path
    forced = slot_argmax(h, t, bias, mask, backend="triton")  # interpreter, default block (3 blocks)
    for idx, logz in (auto, forced):
        assert torch.equal(idx, want[0])
        torch.testing.assert_close(logz, want[1], atol=2e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
def test_gumbel_noise_is_the_documented_hash_and_gumbel_distributed():
    noise = gumbel_noise(2**40 + 17, 3, 50, 4)
    assert noise.shape == (3, 50, 4) and noise.dtype == torch.float32
    assert torch.equal(noise, gumbel_noise(2**40 + 17, 3, 50, 4))
    # the int64 torch hash equals the same hash on Python ints (uint32 arithmetic)
    key = gumbel.stream_key(2**40 + 17)
    for b, n, k in [(0, 0, 0), (2, 49, 3), (1, 17, 2)]:
        per_slot = gumbel.mix32_int(gumbel.mix32_int(key ^ b) ^ k)
        bits = gumbel.mix32_int(gumbel.mix32_int(per_slot ^ n) ^ key)
        u = ((bits >> 9) + 0.5) * 2.0**-23
        assert math.isclose(float(noise[b, n, k]), -math.log(-math.log(u)), rel_tol=1e-6, abs_tol=1e-6)
    big = gumbel_noise(1, 4, 20_000, 2).double()
    assert abs(big.mean().item() - 0.5772157) < 0.02
    assert abs(big.var().item() - math.pi**2 / 6) < 0.05
    corr = torch.corrcoef(torch.stack([big[:, :, 0].flatten(), big[:, :, 1].flatten()]))[0, 1]
    assert abs(corr.item()) < 0.02
    assert not torch.equal(gumbel_noise(1, 1, 64, 2), gumbel_noise(2, 1, 64, 2))


def test_sampling_is_reproducible_and_seed_dependent():
    h, t, bias, mask = make_inputs(2, 60, 3, 6, valid=[60, 31])
    draws = [torch_op(h, t, bias, mask, sample_seed=seed)[0] for seed in range(12)]
    assert torch.equal(draws[0], torch_op(h, t, bias, mask, sample_seed=0)[0])
    assert torch.equal(draws[0], dense(h, t, bias, mask, sample_seed=0)[0])
    assert len({tuple(d.flatten().tolist()) for d in draws}) >= 10
    for d in draws:
        assert all(len(set(row)) == 3 for row in d.tolist()) and bool(mask.gather(1, d).all())


def test_sampling_frequencies_match_the_sequential_softmax():
    """Slot 1 ~ softmax over all valid, slot 2 ~ softmax over the rest (without replacement)."""
    scores = torch.tensor([[1.0, 0.2, -0.5, 0.7, 3.0], [0.3, 1.1, 0.0, -1.0, 9.0]]).T  # (N, K)
    mask = torch.tensor([[True, True, True, True, False]])
    n, slots, rows, seeds = 5, 2, 400, 40
    h = torch.eye(n)[None].expand(rows, n, n).contiguous()  # s[n, k] = t[k, n]
    t = scores.T[None].expand(rows, slots, n).contiguous()
    bias = torch.zeros(rows, n)
    counts = torch.zeros(n, n)
    for seed in range(seeds):
        idx, logz = torch_op(h, t, bias, mask.expand(rows, n), sample_seed=seed)
        counts.index_put_((idx[:, 0], idx[:, 1]), torch.ones(rows), accumulate=True)
    freq = counts / (rows * seeds)
    p1 = torch.softmax(scores[:4, 0].double(), 0)
    for a in range(4):
        rest = [c for c in range(4) if c != a]
        p2 = torch.softmax(scores[rest, 1].double(), 0)
        for c, prob2 in zip(rest, p2):
            prob = float(p1[a] * prob2)
            sigma = math.sqrt(prob * (1 - prob) / (rows * seeds))
            assert abs(float(freq[a, c]) - prob) < 4.5 * sigma + 1e-3, (a, c, float(freq[a, c]), prob)
    assert counts[4].sum() == 0 and counts[:, 4].sum() == 0 and counts.diagonal().sum() == 0


@needs_interpreter
def test_triton_sampling_picks_what_torch_picks():
    h, t, bias, mask = make_inputs(2, 37, 3, 8, valid=[37, 12], seed=2)
    zeros = (torch.zeros_like(h), torch.zeros_like(t), torch.zeros_like(bias), mask)  # keys = noise
    for inputs, seed in ((h, t, bias, mask), 0), ((h, t, bias, mask), 2**40 + 3), (zeros, 5):
        got_idx, got_logz = triton_op(*inputs, sample_seed=seed)
        want_idx, want_logz = torch_op(*inputs, sample_seed=seed)
        assert torch.equal(got_idx, want_idx), seed
        assert not torch.equal(got_idx, dense(*inputs)[0]), seed  # the noise did something
        torch.testing.assert_close(got_logz, want_logz, atol=2e-5, rtol=0)
        torch.testing.assert_close(got_logz.double(), oracle_log_prob(*inputs, got_idx), atol=2e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# numerics: an excluded winner that holds almost all of the next slot's mass
# ----------------------------------------------------------------------------------------------
def dominant_winner_inputs():
    """Candidate 7's score is 30 above every other one in every slot (slot tokens nearly equal)."""
    h, t, bias, mask = make_inputs(1, 40, 3, 16, seed=12)
    h = h * 0.1
    t = t[:, :1].expand(1, 3, 16) + 0.01 * t
    bias = bias * 0.1
    bias[0, 7] = 30.0
    return h, t.contiguous(), bias, mask


def naive_remaining_lse_fp32(h, t, bias, mask, idx):
    """The cancellation-prone formula: log(exp(LSE_all) − Σ exp(s_excluded)) in float32."""
    scores = torch.matmul(h, t.transpose(1, 2)) + bias[:, :, None]
    lse_all = torch.logsumexp(scores.masked_fill(~mask[:, :, None], float("-inf")), dim=1)
    out = []
    for k in range(idx.shape[1]):
        excluded = scores[0, idx[0, :k], k]
        out.append(torch.log(torch.exp(lse_all[0, k]) - torch.exp(excluded).sum()))
    return torch.stack(out)


@pytest.mark.parametrize("path", ["torch_op", pytest.param("triton", marks=needs_interpreter)])
def test_remaining_lse_is_exact_when_an_excluded_winner_dominates(path):
    h, t, bias, mask = dominant_winner_inputs()
    fn = torch_op if path == "torch_op" else triton_op
    want_idx, want_logz = dense(h.double(), t.double(), bias.double(), mask)
    idx, logz = fn(h, t, bias, mask)
    assert int(idx[0, 0]) == 7 and torch.equal(idx, want_idx)
    torch.testing.assert_close(logz.double(), want_logz, atol=1e-5, rtol=0)
    # the naive formula would be off (or −inf) here, so this case does discriminate
    naive = naive_remaining_lse_fp32(h, t, bias, mask, idx)
    exact = torch.stack([torch.logsumexp(
        (torch.matmul(h.double(), t.double().transpose(1, 2)) + bias.double()[:, :, None])[0, :, k]
        .index_fill(0, idx[0, :k], float("-inf")), 0) for k in range(3)])
    assert ((naive[1:].double() - exact[1:]).abs() > 0.5).all()
    sampled_idx, sampled_logz = fn(h, t, bias, mask, sample_seed=4)
    torch.testing.assert_close(
        sampled_logz.double(), oracle_log_prob(h, t, bias, mask, sampled_idx), atol=1e-5, rtol=0
    )


# ----------------------------------------------------------------------------------------------
# invariances
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["torch_op", pytest.param("triton", marks=needs_interpreter)])
def test_permuting_candidates_permutes_the_choice(path):
    h, t, bias, mask = make_inputs(1, 45, 4, 10, valid=[30], seed=21)
    fn = torch_op if path == "torch_op" else triton_op
    want_idx, want_logz = dense(h, t, bias, mask)
    perm = torch.randperm(45, generator=torch.Generator().manual_seed(3))
    idx, logz = fn(h[:, perm], t, bias[:, perm], mask[:, perm])
    assert torch.equal(perm[idx], want_idx)
    torch.testing.assert_close(logz, want_logz, atol=2e-5, rtol=0)


def test_extra_padding_changes_nothing():
    h, t, bias, mask = make_inputs(2, 20, 3, 8, valid=[20, 11])
    pad = make_inputs(2, 13, 3, 8, seed=1)
    padded = (torch.cat([h, pad[0] * 100], 1), t, torch.cat([bias, pad[2] + 1e3], 1),
              torch.cat([mask, torch.zeros(2, 13, dtype=torch.bool)], 1))
    for fn in (dense, torch_op):
        got = run_with_grads(fn, *padded)
        want = run_with_grads(fn, h, t, bias, mask)
        assert torch.equal(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])
        torch.testing.assert_close(got[2][:, :20], want[2])
        assert not got[2][:, 20:].any() and not got[4][:, 20:].any()


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
BACKENDS = ["torch", pytest.param("triton", marks=needs_interpreter)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_slots_than_valid_candidates_names_the_row(backend):
    h, t, bias, mask = make_inputs(3, 10, 4, 5, valid=[10, 3, 0])
    with pytest.raises(ValueError, match=r"row 1 has 3 valid candidates.*K = 4"):
        slot_argmax(h, t, bias, mask, backend=backend)
    with pytest.raises(ValueError, match="row 1"):
        slot_argmax_dense(h, t, bias, mask)
    with pytest.raises(ValueError, match="row 0 has 2 valid"):
        slot_argmax(h[:, :2], t, bias[:, :2], mask[:, :2], backend=backend)


def test_bad_inputs_raise_clear_errors():
    h, t, bias, mask = make_inputs(2, 10, 3, 4)
    cases = [
        ((h[0], t, bias, mask), {}, ValueError, "h must be"),
        ((h, t[:, :, :3], bias, mask), {}, ValueError, "t must be"),
        ((h, t[:1], bias, mask), {}, ValueError, "t must be"),
        ((h, t, bias[:, :9], mask), {}, ValueError, "bias must be"),
        ((h, t, bias, mask[:1]), {}, ValueError, "mask must be"),
        ((h, t[:, :0], bias, mask), {}, ValueError, "K and d must be"),
        ((h, t.double(), bias, mask), {}, TypeError, "t must have h's dtype"),
        ((h, t, bias.half(), mask), {}, TypeError, "bias must have h's dtype"),
        ((h, t, bias, mask.int()), {}, TypeError, "mask must be torch.bool"),
        ((h.int(), t.int(), bias.int(), mask), {}, TypeError, "h must be one of"),
        ((h, t, bias, mask.to("meta")), {}, ValueError, "one device"),
        ((h, t, bias, mask.tolist()), {}, TypeError, "mask must be a torch.Tensor"),
        ((h, t, bias, mask), {"backend": "cuda"}, ValueError, "backend must be one of"),
        ((h, t, bias, mask), {"sample_seed": 1.5}, TypeError, "sample_seed"),
        ((h, t, bias, mask), {"sample_seed": True}, TypeError, "sample_seed"),
        ((h, t, bias, mask), {"sample_seed": -1}, ValueError, "sample_seed"),
        ((h, t, bias, mask), {"sample_seed": 2**63}, ValueError, "sample_seed"),
    ]
    for args, kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            slot_argmax(*args, **kwargs)


@needs_interpreter
def test_triton_path_limits_are_explicit():
    slots = TRITON_MAX_SLOTS + 1
    h, t, bias, mask = make_inputs(1, 40, slots, 4)
    with pytest.raises(ValueError, match=f"K ≤ {TRITON_MAX_SLOTS}"):
        slot_argmax(h, t, bias, mask, backend="triton")
    with pytest.raises(ValueError, match="supports"):
        slot_argmax(h.double(), t.double(), bias.double(), mask, backend="triton")
    with pytest.raises(ValueError, match="block_n"):
        triton_op(h, t[:, :2], bias, mask, block_n=24)
    # "auto" never picks Triton on CPU, and the torch path takes any K and float64
    assert slot_argmax(h.double(), t.double(), bias.double(), mask)[0].shape == (1, slots)


# ----------------------------------------------------------------------------------------------
# torch.library integration
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_flop_counter_counts_the_formulas(backend):
    batch, n, slots, dim = 2, 30, 3, 8
    h, t, bias, mask = make_inputs(batch, n, slots, dim, valid=[30, 17])
    h.requires_grad_()
    forward_op = torch.ops.ega.slot_argmax if backend == "torch" else torch.ops.ega.slot_argmax_triton
    with FlopCounterMode(display=False) as counter:
        _, logz = slot_argmax(h, t, bias, mask, backend=backend)
    expected = 2 * batch * n * slots * dim
    assert counter.get_total_flops() == expected == slot_argmax_flops(batch, n, slots, dim)
    assert counter.get_flop_counts()["Global"][forward_op] == expected
    with FlopCounterMode(display=False) as counter:
        _, logz = slot_argmax(h, t, bias, mask, backend=backend)
        logz.sum().backward()
    assert counter.get_total_flops() == 8 * batch * n * slots * dim


def test_torch_compile_fullgraph_matches_eager():
    """Inductor compiles the forward (the op is opaque: one extern call, no C++ to build); the
    backward runs through AOTAutograd (aot_eager keeps the test fast) and the registered autograd."""
    h, t, bias, mask = make_inputs(2, 30, 3, 8, valid=[30, 12])

    def allocate(h_, t_, bias_, mask_):
        return slot_argmax(h_, t_, bias_, mask_, sample_seed=7, backend="torch")

    compiled = torch.compile(allocate, fullgraph=True)
    for shifted in (bias, bias + 0.5):  # the second call reuses the graph
        got, want = compiled(h, t, shifted, mask), allocate(h, t, shifted, mask)
        assert torch.equal(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])

    def loss(h_, t_, bias_):
        return (slot_argmax(h_, t_, bias_, mask, backend="torch")[1] * 2.0).sum()

    grads = []
    for fn in (torch.compile(loss, fullgraph=True, backend="aot_eager"), loss):
        inputs = [x.clone().requires_grad_() for x in (h, t, bias)]
        fn(*inputs).backward()
        grads.append([x.grad for x in inputs])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)
