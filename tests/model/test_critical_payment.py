"""Critical-bid (Myerson) payments of the generator's allocation (egakit.model.critical_payment)."""
import pytest
import torch

from egakit.model import EGAV1
from egakit.model.critical_payment import myerson_prices, winner_thresholds

from conftest import VOCAB_SIZES, make_batch, small_config


def greedy(scores: torch.Tensor, mask: torch.Tensor, K: int) -> list[int]:
    """Reference greedy slot-wise argmax of one request: scores (N, K), mask (N,)."""
    taken, out = mask.clone(), []
    taken = ~taken
    for k in range(K):
        col = scores[:, k].masked_fill(taken, float("-inf"))
        n = int(col.argmax())
        out.append(n)
        taken[n] = True
    return out


def position_of(h_scores, bias_slope, n, bid, mask, K):
    """Slot (0-based) that candidate n wins at own bid ``bid``, or K when it loses; ``h_scores``
    holds every other candidate's full score and n's bid-free score."""
    s = h_scores.clone()
    s[n] = s[n] + bias_slope * bid
    won = greedy(s, mask, K)
    return won.index(n) if n in won else K


def test_thresholds_match_a_bisection_on_the_own_bid():
    g = torch.Generator().manual_seed(0)
    N, K = 14, 3
    for trial in range(5):
        h_scores = torch.randn(N, K, generator=g)  # the bid-free part h·T
        slope = torch.rand(N, generator=g) + 0.2  # c · q̂
        bids = torch.rand(N, generator=g) * 3
        mask = torch.rand(N, generator=g) > 0.2
        mask[:K + 1] = True
        scores = h_scores + (slope * bids).unsqueeze(-1)
        idx = torch.tensor(greedy(scores, mask, K))
        theta = winner_thresholds(scores[None], mask[None], idx[None], h_scores[idx][None], slope[idx][None])[0]  # (K, K)
        for j, n in enumerate(idx.tolist()):
            base = scores.clone()
            base[n] = h_scores[n]  # everyone else bids as reported; n's own bid is the variable
            for level in range(K):  # θ*_l: smallest bid reaching slot l or better
                lo, hi = 0.0, 1e3
                if position_of(base, slope[n], n, lo + 1e-9, mask, K) <= level:
                    expected = 0.0
                else:
                    for _ in range(60):
                        mid = (lo + hi) / 2
                        lo, hi = (lo, mid) if position_of(base, slope[n], n, mid, mask, K) <= level else (mid, hi)
                    expected = hi
                assert theta[j, level].item() == pytest.approx(expected, abs=1e-4), (trial, j, level)


def test_thresholds_keep_their_digits_when_the_own_bid_dwarfs_them():
    """A winner bidding 10^4 × its threshold: float32 thresholds match float64 ones (the bid-free
    score is passed in, not recovered from the bid-dominated full score)."""
    g = torch.Generator().manual_seed(3)
    N, K = 12, 3
    h_scores = torch.randn(N, K, generator=g, dtype=torch.float64)
    slope = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
    bids = torch.rand(N, generator=g, dtype=torch.float64)
    bids[0] = 1e4  # wins slot 1 by far
    mask = torch.ones(N, dtype=torch.bool)
    scores = h_scores + (slope * bids).unsqueeze(-1)
    idx = torch.tensor(greedy(scores, mask, K))
    assert idx[0] == 0
    args = lambda dt: (scores[None].to(dt), mask[None], idx[None], h_scores[idx][None].to(dt), slope[idx][None].to(dt))
    exact = winner_thresholds(*args(torch.float64))
    torch.testing.assert_close(winner_thresholds(*args(torch.float32)).double(), exact, rtol=1e-5, atol=1e-6)
    assert 0 < exact[0, 0, 0] < 10  # the threshold is tiny next to the bid


def test_myerson_prices_are_vcg_like_sums_of_thresholds():
    theta = torch.tensor([[[5.0, 3.0, 1.0], [9.0, 4.0, 2.0], [9.0, 9.0, 2.5]]])  # winner j sits in slot j
    x = torch.tensor([1.0, 0.5, 0.25])
    bids = torch.tensor([[10.0, 10.0, 10.0]])
    p = myerson_prices(theta, x, bids)[0]
    assert p[0].item() == pytest.approx((0.5 * 5 + 0.25 * 3 + 0.25 * 1) / 1.0)
    assert p[1].item() == pytest.approx((0.25 * 4 + 0.25 * 2) / 0.5)
    assert p[2].item() == pytest.approx(2.5)
    assert myerson_prices(theta, x, torch.full((1, 3), 0.1))[0].max().item() == pytest.approx(0.1)  # IR clamp


def _model(**overrides) -> EGAV1:
    torch.manual_seed(1)
    model = EGAV1(small_config(payment_rule="critical", w_z_init=1.0, **overrides), VOCAB_SIZES).eval()
    with torch.no_grad():
        model.observation.logit_rate.copy_(torch.logit(torch.tensor([0.6, 0.4, 0.3])))
    return model


def test_truthful_bidding_is_optimal_under_the_model_click_model():
    """With clicks q̂_i · x_k (the model's own click model) no misreport γ·b beats the truth."""
    model = _model()
    K = model.config.K
    for seed in range(3):
        batch = make_batch(B=3, N=20, seed=seed)
        with torch.no_grad():
            enc = model.encode(batch)
            t = model.slot_tokens(enc)
            x = model.observation.position_ctr()

            def utility(bids, n, value):
                ids, prices = model.allocate(batch, bids=bids, encoding=enc, slot_tokens=t)
                u = torch.zeros(batch.batch_size)
                for row in range(batch.batch_size):
                    hit = (ids[row] == batch.cand_ids[row, n]).nonzero()
                    if len(hit) and batch.cand_mask[row, n]:
                        k = int(hit[0])
                        u[row] = enc.q_hat[row, n] * x[k] * (value[row] - prices[row, k])
                return u

            for n in range(20):
                value = batch.bids[:, n].clone()
                truthful = utility(batch.bids, n, value)
                for gamma in (0.2, 0.5, 0.8, 0.95, 1.05, 1.3, 2.0, 5.0):
                    bids = batch.bids.clone()
                    bids[:, n] *= gamma
                    assert (utility(bids, n, value) <= truthful + 1e-6).all(), (seed, n, gamma)


def test_critical_prices_are_individually_rational_and_positive():
    model = _model()
    for seed in range(3):
        batch = make_batch(B=4, N=16, seed=seed)
        batch = batch.replace(bids=batch.bids * torch.exp(torch.randn(4, 16) * 3))
        ids, prices = model.allocate(batch)
        winners_bids = torch.stack([batch.bids[r][[batch.cand_ids[r].tolist().index(i) for i in ids[r].tolist()]] for r in range(4)])
        assert (prices >= 0).all() and (prices <= winners_bids * (1 + 1e-6)).all()


def test_a_request_with_exactly_k_candidates_prices_the_last_slot_at_zero():
    model = _model()
    batch = make_batch(B=1, N=8, valid_counts=[3])
    _, prices = model.allocate(batch)
    assert prices[0, -1].item() == 0.0 and (prices >= 0).all()


def test_network_rule_still_prices_with_eq19():
    model = _model()
    net = EGAV1(small_config(payment_rule="network", w_z_init=1.0), VOCAB_SIZES).eval()
    net.load_state_dict(model.state_dict())
    batch = make_batch(B=2, N=16, seed=4)
    with torch.no_grad():
        enc = net.encode(batch)
        idx, _ = net.generate(batch, encoding=enc)
        expected = net.pay(batch, idx, net.winner_ctr(batch, idx, encoding=enc), encoding=enc)
    torch.testing.assert_close(net.allocate(batch)[1], expected)
    assert not torch.allclose(model.allocate(batch)[1], expected)
