"""GSP and VCG position auctions: hand-worked prices, IR, ties, errors."""
import pytest
import torch

from egakit.auction import position_auction, rank_scores

F64 = torch.float64

# Hand-worked example: 4 bidders, 2 slots, position effects θ = (1.0, 0.5).
#   ad   bid  ctr   score = ctr·bid
#   A    5    0.10  0.50
#   B    2    0.20  0.40
#   C    3    0.10  0.30
#   D    1    0.25  0.25
# Rank A > B > C > D: A gets slot 1, B slot 2.
# GSP (next score / own ctr): A pays 0.40 / 0.10 = 4.0; B pays 0.30 / 0.20 = 1.5.
# VCG (externality / own clicks):
#   B (slot 2): (θ2 − 0)·s_C = 0.5·0.30 = 0.15 over clicks 0.20·0.5 = 0.10 → 1.5 (= GSP on the last slot)
#   A (slot 1): (θ1 − θ2)·s_B + (θ2 − 0)·s_C = 0.5·0.40 + 0.5·0.30 = 0.35 over clicks 0.10·1.0 → 3.5
# The candidates are stored in the order C, A, D, B, so the winners are positions (1, 3).
BIDS = torch.tensor([[3.0, 5.0, 1.0, 2.0]], dtype=F64)
CTR = torch.tensor([[0.10, 0.10, 0.25, 0.20]], dtype=F64)
THETA = torch.tensor([1.0, 0.5], dtype=F64)
MASK = torch.ones(1, 4, dtype=torch.bool)


def test_gsp_hand_example():
    out = position_auction(BIDS, CTR, THETA, MASK, K=2, mechanism="gsp")
    assert out.winners.tolist() == [[1, 3]]
    assert out.winners.dtype == torch.int64
    torch.testing.assert_close(out.prices, torch.tensor([[4.0, 1.5]], dtype=F64))


def test_vcg_hand_example():
    out = position_auction(BIDS, CTR, THETA, MASK, K=2, mechanism="vcg")
    assert out.winners.tolist() == [[1, 3]]
    torch.testing.assert_close(out.prices, torch.tensor([[3.5, 1.5]], dtype=F64))


def test_slot_ctr_per_row_matches_shared():
    a = position_auction(BIDS, CTR, THETA, MASK, K=2, mechanism="vcg")
    b = position_auction(BIDS, CTR, THETA.unsqueeze(0), MASK, K=2, mechanism="vcg")
    torch.testing.assert_close(a.prices, b.prices)


def test_last_loser_sets_the_last_price_and_no_next_ad_pays_zero():
    # With only K valid candidates there is no next ad: the last slot pays 0.
    mask = torch.tensor([[False, True, False, True]])
    for mech in ("gsp", "vcg"):
        out = position_auction(BIDS, CTR, THETA, mask, K=2, mechanism=mech)
        assert out.winners.tolist() == [[1, 3]]
        assert out.prices[0, 1].item() == 0.0


def _random(B=32, N=40, K=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    bids = torch.rand(B, N, generator=g, dtype=F64) + 0.05
    ctr = torch.rand(B, N, generator=g, dtype=F64) * 0.3
    theta = torch.sort(torch.rand(K, generator=g, dtype=F64) + 0.1, descending=True).values
    mask = torch.rand(B, N, generator=g) < 0.8
    mask[:, :K] = True
    return bids, ctr, theta, mask


@pytest.mark.parametrize("mech", ["gsp", "vcg"])
def test_ir_and_winners_are_the_top_scores(mech):
    bids, ctr, theta, mask = _random()
    out = position_auction(bids, ctr, theta, mask, K=4, mechanism=mech)
    won_bids = bids.gather(1, out.winners)
    assert bool((out.prices <= won_bids + 1e-12).all())  # IR, Eq. 4
    assert bool((out.prices >= 0).all())
    assert bool(mask.gather(1, out.winners).all())
    scores = rank_scores(bids, ctr, mask)
    top = torch.sort(scores, dim=1, descending=True).values[:, :4]
    torch.testing.assert_close(scores.gather(1, out.winners), top)


def test_vcg_never_charges_more_than_gsp():
    bids, ctr, theta, mask = _random(seed=3)
    gsp = position_auction(bids, ctr, theta, mask, K=4, mechanism="gsp")
    vcg = position_auction(bids, ctr, theta, mask, K=4, mechanism="vcg")
    assert torch.equal(gsp.winners, vcg.winners)
    assert bool((vcg.prices <= gsp.prices + 1e-12).all())
    torch.testing.assert_close(vcg.prices[:, -1], gsp.prices[:, -1])


def test_ties_go_to_the_lower_index():
    N = 300  # many equal scores: topk alone would leave the tie order unspecified
    bids = torch.ones(2, N, dtype=F64)
    ctr = torch.full((2, N), 0.1, dtype=F64)
    ctr[1, 200] = 0.2  # row 1: one clear winner, the rest tied
    mask = torch.ones(2, N, dtype=torch.bool)
    mask[0, 0] = False
    out = position_auction(bids, ctr, torch.tensor([1.0, 0.8, 0.6], dtype=F64), mask, K=3)
    assert out.winners.tolist() == [[1, 2, 3], [200, 0, 1]]


def test_padding_never_wins_whatever_its_bid():
    bids = torch.tensor([[1.0, float("nan"), 2.0, 1e9]], dtype=F64)
    ctr = torch.tensor([[0.1, 0.1, 0.1, 0.9]], dtype=F64)
    mask = torch.tensor([[True, False, True, False]])
    out = position_auction(bids, ctr, torch.tensor([1.0], dtype=F64), mask, K=1, mechanism="vcg")
    assert out.winners.tolist() == [[2]]
    torch.testing.assert_close(out.prices, torch.tensor([[1.0]], dtype=F64))


def test_zero_ctr_winner_pays_zero_not_nan():
    bids = torch.ones(1, 3, dtype=F64)
    ctr = torch.zeros(1, 3, dtype=F64)
    for mech in ("gsp", "vcg"):
        out = position_auction(bids, ctr, torch.tensor([1.0, 0.5], dtype=F64), torch.ones(1, 3, dtype=torch.bool), K=2, mechanism=mech)
        assert out.prices.tolist() == [[0.0, 0.0]]


def test_k_greater_than_valid_raises():
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    with pytest.raises(ValueError, match="row 0"):
        position_auction(BIDS.expand(2, -1), CTR.expand(2, -1), torch.ones(3, dtype=F64), mask, K=3)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(bids=torch.tensor([[3.0, -5.0, 1.0, 2.0]], dtype=F64)), "bids: row 0"),
        (dict(bids=torch.tensor([[3.0, 0.0, 1.0, 2.0]], dtype=F64)), "bids: row 0"),
        (dict(ctr=torch.tensor([[0.1, float("nan"), 0.2, 0.2]], dtype=F64)), "ctr: row 0"),
        (dict(slot_ctr=torch.tensor([0.5, 1.0], dtype=F64)), "non-increasing"),
        (dict(slot_ctr=torch.tensor([1.0, 0.0], dtype=F64)), "slot_ctr"),
        (dict(slot_ctr=torch.tensor([1.0, 0.5, 0.2], dtype=F64)), "slot_ctr must have shape"),
        (dict(mechanism="first-price"), "mechanism"),
        (dict(K=0), "K must be"),
    ],
)
def test_bad_input_raises(change, match):
    kw = dict(bids=BIDS, ctr=CTR, slot_ctr=THETA, mask=MASK, K=2, mechanism="gsp")
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        position_auction(**kw)


def test_raising_own_bid_never_lowers_own_score():
    bids, ctr, _, mask = _random(seed=5)
    assert bool((rank_scores(bids * 1.5, ctr, mask) >= rank_scores(bids, ctr, mask)).all())


def _reference(bids, ctr, theta, mask, K):
    """Definition-level reference, one row at a time: a stable sort for the ranking, GSP as
    next score / own ctr, VCG as (others' welfare without the ad) − (others' welfare with it)."""
    winners, gsp, vcg = [], [], []
    for b in range(bids.shape[0]):
        valid = [i for i in range(bids.shape[1]) if mask[b, i]]
        s = {i: float(ctr[b, i] * bids[b, i]) for i in valid}
        order = sorted(valid, key=lambda i: (-s[i], i))

        def welfare(ranked):
            return sum(s[a] * float(theta[k]) for k, a in enumerate(ranked[:K]))

        w = order[:K]
        winners.append(w)
        gsp.append([(s[order[k + 1]] if k + 1 < len(order) else 0.0) / float(ctr[b, a]) for k, a in enumerate(w)])
        row = []
        for k, a in enumerate(w):
            others_without = welfare([x for x in order if x != a])
            others_with = welfare(order) - s[a] * float(theta[k])
            row.append((others_without - others_with) / (float(ctr[b, a]) * float(theta[k])))
        vcg.append(row)
    t = lambda x: torch.tensor(x, dtype=F64)
    return torch.tensor(winners), t(gsp), t(vcg)


@pytest.mark.parametrize("seed", range(4))
def test_matches_definition_level_reference_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    B, N, K = 6, 9, 3
    bids = torch.randint(1, 4, (B, N), generator=g).to(F64)  # few distinct values: many ties
    ctr = torch.randint(1, 3, (B, N), generator=g).to(F64) / 10
    theta = torch.tensor([1.0, 0.6, 0.3], dtype=F64)
    mask = torch.rand(B, N, generator=g) < 0.7
    mask[:, :K] = True
    w_ref, gsp_ref, vcg_ref = _reference(bids, ctr, theta, mask, K)
    gsp = position_auction(bids, ctr, theta, mask, K, mechanism="gsp")
    vcg = position_auction(bids, ctr, theta, mask, K, mechanism="vcg")
    assert torch.equal(gsp.winners, w_ref) and torch.equal(vcg.winners, w_ref)
    torch.testing.assert_close(gsp.prices, gsp_ref)
    torch.testing.assert_close(vcg.prices, vcg_ref)


def test_large_n_is_linear_memory_path():
    # N = 10^5 runs through topk(K+1) and O(N) passes; the winners are the top scores.
    g = torch.Generator().manual_seed(0)
    B, N, K = 2, 100_000, 5
    bids = torch.rand(B, N, generator=g) + 0.01
    ctr = torch.rand(B, N, generator=g)
    out = position_auction(bids, ctr, torch.linspace(1.0, 0.5, K), torch.ones(B, N, dtype=torch.bool), K, "vcg")
    top = torch.topk(ctr * bids, K, dim=1)
    assert torch.equal(out.winners, top.indices)
