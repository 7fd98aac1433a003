"""Regret by bid perturbation and Ψ: hand-worked GSP regret, VCG ≈ 0, GSP > 0, edge cases."""
import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from egakit.auction import (
    DEFAULT_GAMMAS,
    PositionContext,
    ic_metric,
    index_batch,
    psi,
    regret,
    separable_ctr,
)

F64 = torch.float64

# Hand-worked GSP regret. Same ads as test_position (stored order C, A, D, B) with θ = (1.0, 0.9):
#   scores A 0.50, B 0.40, C 0.30, D 0.25; values = bids (truthful).
# Truthful GSP: A slot 1 pays 4.0 → u_A = (5 − 4)·0.10·1.0 = 0.10
#               B slot 2 pays 1.5 → u_B = (2 − 1.5)·0.20·0.9 = 0.09
# Misreport γ = 0.7: A bids 3.5, score 0.35 → slot 2, pays 0.30/0.10 = 3.0 → u = (5 − 3)·0.10·0.9 = 0.18
#   → regret_A = 0.18 − 0.10 = 0.08.  B bids 1.4, score 0.28 < 0.30 → loses, u = 0 → regret_B = 0.
# Ψ over the winners = 0.08 / (0.10 + 0.09).
# Truthful VCG: A pays ((1 − 0.9)·0.40 + 0.9·0.30) / 0.10 = 3.1 → u_A = 0.19 > 0.18: no gain.
VALUES = torch.tensor([[3.0, 5.0, 1.0, 2.0]], dtype=F64)
CTX = PositionContext(
    ctr=torch.tensor([[0.10, 0.10, 0.25, 0.20]], dtype=F64),
    slot_ctr=torch.tensor([1.0, 0.9], dtype=F64),
    mask=torch.ones(1, 4, dtype=torch.bool),
    K=2,
)


def test_gsp_regret_hand_example():
    r = regret("gsp", VALUES, separable_ctr, CTX, gammas=(0.7,), advertisers="winners")
    assert r.tested.tolist() == [[False, True, False, True]]
    torch.testing.assert_close(r.utility, torch.tensor([[0.0, 0.10, 0.0, 0.09]], dtype=F64))
    torch.testing.assert_close(r.regret, torch.tensor([[0.0, 0.08, 0.0, 0.0]], dtype=F64))
    assert r.best_gamma[0, 1].item() == pytest.approx(0.7)
    assert r.psi == pytest.approx(0.08 / 0.19)


def test_vcg_regret_hand_example():
    r = regret("vcg", VALUES, separable_ctr, CTX, gammas=(0.7,), advertisers="winners")
    torch.testing.assert_close(r.utility[0, 1], torch.tensor(0.19, dtype=F64))
    assert r.regret_sum == 0.0


def _random_auctions(B=48, N=10, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(B, N, generator=g, dtype=F64) + 0.1
    ctr = torch.rand(B, N, generator=g, dtype=F64) * 0.2 + 0.01
    theta = torch.sort(torch.rand(K, generator=g, dtype=F64) + 0.1, descending=True).values
    mask = torch.rand(B, N, generator=g) < 0.85
    mask[:, :K] = True
    return values, ctr, theta, mask


def test_vcg_psi_is_zero_and_gsp_psi_positive():
    values, ctr, theta, mask = _random_auctions()
    vcg = ic_metric("vcg", values, ctr, theta, mask, 3)
    gsp = ic_metric("gsp", values, ctr, theta, mask, 3)
    assert 0.0 <= vcg < 1e-6
    assert gsp > 1e-3


def test_default_gammas_are_the_papers():
    assert DEFAULT_GAMMAS == pytest.approx([0.2 * j for j in range(1, 11)])


def test_contenders_find_every_profitable_deviation():
    values, ctr, theta, mask = _random_auctions(seed=1)
    ctx = PositionContext(ctr, theta, mask, 3)
    won = regret("gsp", values, separable_ctr, ctx, advertisers="winners")
    cont = regret("gsp", values, separable_ctr, ctx)
    every = regret("gsp", values, separable_ctr, ctx, advertisers="all")
    assert bool((won.tested <= cont.tested).all()) and bool((cont.tested <= every.tested).all())
    assert cont.tested.sum() < every.tested.sum()  # the filter does prune
    torch.testing.assert_close(cont.regret, every.regret)
    assert cont.regret_sum >= won.regret_sum


def test_chunked_misreports_match_one_call():
    values, ctr, theta, mask = _random_auctions(B=6, seed=2)
    ctx = PositionContext(ctr, theta, mask, 3)
    one = regret("gsp", values, separable_ctr, ctx)
    many = regret("gsp", values, separable_ctr, ctx, max_elements=37)  # three rows per call
    torch.testing.assert_close(one.regret, many.regret)
    torch.testing.assert_close(one.utility, many.utility)


def test_untruthful_bids_are_the_reference_point():
    values, ctr, theta, mask = _random_auctions(seed=4)
    shaded = values * 0.5
    r = regret("vcg", values, separable_ctr, PositionContext(ctr, theta, mask, 3), bids=shaded)
    assert r.regret_sum > 0  # under VCG, bidding half the value is beaten by bidding more


@dataclass
class FixedContext:
    mask: torch.Tensor
    prices: torch.Tensor  # (B, K) price charged whatever the bids


class FixedAllocation:
    """Slots go to candidates 0..K-1 at fixed prices, whatever the bids: no misreport matters."""

    def allocate(self, bids, ctx):
        B, K = ctx.prices.shape
        return torch.arange(K).expand(B, K).clone(), ctx.prices


def _flat_ctr(winners, ctx):
    return torch.full(winners.shape, 0.1, dtype=F64)


def test_regret_is_zero_when_the_outcome_ignores_bids():
    values, *_ = _random_auctions(B=8, N=6)
    ctx = FixedContext(mask=torch.ones(8, 6, dtype=torch.bool), prices=torch.zeros(8, 2, dtype=F64))
    r = regret(FixedAllocation(), values, _flat_ctr, ctx)
    assert bool(r.tested.all())  # not a ScoredMechanism: every valid ad is tested
    assert r.regret_sum == 0.0 and r.utility_sum > 0
    assert r.psi == 0.0


def test_zero_total_utility_does_not_divide_by_zero():
    values, *_ = _random_auctions(B=8, N=6)
    # Winners pay exactly their value whatever they bid: every utility is 0, and so is regret.
    ctx = FixedContext(mask=torch.ones(8, 6, dtype=torch.bool), prices=values[:, :2].clone())
    r = regret(FixedAllocation(), values, _flat_ctr, ctx)
    assert r.utility_sum == 0.0 and r.regret_sum == 0.0
    assert r.psi == 0.0


class FirstPrice:
    """Pay-your-bid position auction: zero truthful utility, profitable shading."""

    def __init__(self):
        from egakit.auction import GSPMechanism

        self.inner = GSPMechanism()

    def allocate(self, bids, ctx):
        w, _ = self.inner.allocate(bids, ctx)
        return w, bids.gather(1, w)


def test_zero_utility_with_regret_is_inf_not_a_division():
    values, ctr, theta, mask = _random_auctions(B=8)
    r = regret(FirstPrice(), values, separable_ctr, PositionContext(ctr, theta, mask, 3))
    assert r.utility_sum == 0.0 and r.regret_sum > 0
    assert r.psi == math.inf


def test_psi_ratio_of_sums():
    assert psi(1.0, 4.0) == 0.25
    assert psi(0.0, 0.0) == 0.0
    assert psi(0.5, 0.0) == math.inf


def test_custom_ctr_fn_sees_the_misreport_rows():
    values, ctr, theta, mask = _random_auctions(B=5, seed=6)
    ctx = PositionContext(ctr, theta, mask, 3)
    seen = []

    def oracle(winners, c):
        assert winners.shape[0] == c.ctr.shape[0]
        seen.append(winners.shape[0])
        return 0.5 * separable_ctr(winners, c)

    r = regret("vcg", values, oracle, ctx)
    assert seen[0] == 5 and sum(seen[1:]) == int(r.tested.sum()) * len(DEFAULT_GAMMAS)
    assert r.psi < 1e-6


def test_index_batch_handles_nested_contexts():
    ctx = {"a": torch.arange(6).view(3, 2), "k": 4, "p": PositionContext(torch.zeros(3, 2), torch.ones(2), torch.ones(3, 2, dtype=torch.bool), 2)}
    out = index_batch(ctx, torch.tensor([2, 2, 0]))
    assert out["a"].tolist() == [[4, 5], [4, 5], [0, 1]]
    assert out["k"] == 4 and out["p"].slot_ctr.shape == (2,) and out["p"].ctr.shape == (3, 2)


def test_bad_gammas_and_advertisers_raise():
    with pytest.raises(ValueError, match="gammas"):
        regret("gsp", VALUES, separable_ctr, CTX, gammas=(0.0, 1.0))
    with pytest.raises(ValueError, match="advertisers"):
        regret("gsp", VALUES, separable_ctr, CTX, advertisers="losers")


def test_batched_regret_matches_one_misreport_at_a_time():
    from egakit.auction import position_auction

    values, ctr, theta, mask = _random_auctions(B=3, N=6, seed=7)
    ctx = PositionContext(ctr, theta, mask, 3)
    r = regret("gsp", values, separable_ctr, ctx, advertisers="all")

    def utility(bids, b, i):
        out = position_auction(bids, ctr, theta, mask, 3, "gsp")
        slots = (out.winners[b] == i).nonzero()
        if not len(slots):
            return 0.0
        k = int(slots[0, 0])
        return float((values[b, i] - out.prices[b, k]) * ctr[b, i] * theta[k])

    for b in range(3):
        for i in range(6):
            if not mask[b, i]:
                continue
            truthful = utility(values, b, i)
            best = max(utility(values.index_put((torch.tensor(b), torch.tensor(i)), values[b, i] * gm), b, i) for gm in DEFAULT_GAMMAS)
            assert r.utility[b, i].item() == pytest.approx(truthful)
            assert r.regret[b, i].item() == pytest.approx(max(0.0, best - truthful))


@settings(max_examples=30, deadline=None)
@given(mechanism=st.sampled_from(["gsp", "vcg"]), seed=st.integers(0, 2**31 - 1),
       B=st.integers(1, 6), N=st.integers(3, 12), K=st.integers(1, 3),
       shade=st.floats(0.3, 1.5), advertisers=st.sampled_from(["winners", "winners+contenders", "all"]))
def test_regret_and_psi_are_never_negative(mechanism, seed, B, N, K, shade, advertisers):
    """Property: for random auctions, reported bids and advertiser sets, every regret is ≥ 0, so
    is Ψ, and an untested advertiser carries no regret."""
    values, ctr, theta, mask = _random_auctions(B=B, N=N, K=K, seed=seed)
    ctx = PositionContext(ctr, theta, mask, K)
    r = regret(mechanism, values, separable_ctr, ctx, bids=values * shade, advertisers=advertisers)
    assert bool((r.regret >= 0).all()) and bool((r.regret[~r.tested] == 0).all())
    assert r.psi >= 0.0
