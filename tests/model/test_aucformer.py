"""AucFormer: generator (Eq. 17), evaluator (Eq. 18), payment network (Eq. 19), GSP (−auf)."""
import pytest
import torch

from egakit.model import EGAV1, gsp_allocation
from egakit.model.payment import other_winners

from conftest import VOCAB_SIZES, make_batch, small_config


def build(seed: int = 0, **overrides) -> EGAV1:
    torch.manual_seed(seed)
    return EGAV1(small_config(**overrides), VOCAB_SIZES).eval()


@pytest.fixture(scope="module")
def model() -> EGAV1:
    return build()


def test_masked_candidates_are_never_selected(model):
    for seed in range(4):
        batch = make_batch(B=3, N=20, seed=seed, min_valid=3)
        extra = torch.rand(3, 20, generator=torch.Generator().manual_seed(seed)) < 0.8
        extra |= batch.cand_mask.cumsum(1) <= 3  # keep >= K allowed per row
        allowed = batch.cand_mask & extra
        with torch.no_grad():
            enc = model.encode(batch)
            for sample_seed in (None, seed):
                for mask in (None, extra):
                    idx, logz = model.generate(batch, sample_seed=sample_seed, extra_mask=mask, encoding=enc)
                    ok = (allowed if mask is not None else batch.cand_mask).gather(1, idx)
                    assert ok.all()
                    assert all(len(set(row.tolist())) == idx.shape[1] for row in idx), "no repeats"
                    assert (logz <= 0).all()


def test_greedy_matches_dense_scores_and_removing_a_winner(model):
    batch = make_batch(B=2, N=25, seed=1)
    with torch.no_grad():
        enc = model.encode(batch)
        t = model.slot_tokens(enc)
        idx, logz = model.generate(batch, encoding=enc, slot_tokens=t)
        scores = model.generator.scores(enc.h_ad, t, enc.q_hat, batch.bids)
        allowed = batch.cand_mask.clone()
        for k in range(idx.shape[1]):
            s = scores[:, :, k].masked_fill(~allowed, float("-inf"))
            assert torch.equal(s.argmax(1), idx[:, k])
            torch.testing.assert_close(logz[:, k], s.gather(1, idx[:, k : k + 1]).squeeze(1) - s.logsumexp(1))
            allowed.scatter_(1, idx[:, k : k + 1], False)
        # RLAF's Y_−i: the same generator with y_1 removed never picks it.
        without_first = torch.ones_like(batch.cand_mask).scatter(1, idx[:, :1], False)
        idx_minus, _ = model.generate(batch, extra_mask=without_first, encoding=enc, slot_tokens=t)
        assert not (idx_minus == idx[:, :1]).any()


def test_sampling_is_seeded(model):
    batch = make_batch(B=2, N=30, seed=2)
    with torch.no_grad():
        enc = model.encode(batch)
        a, _ = model.generate(batch, sample_seed=11, encoding=enc)
        b, _ = model.generate(batch, sample_seed=11, encoding=enc)
    assert torch.equal(a, b)


def test_higher_own_bid_never_lowers_own_score_or_allocation():
    model = build(w_z_init=-1.5)  # e^{w_z} stays positive whatever w_z is
    batch = make_batch(B=2, N=18, seed=3)
    with torch.no_grad():
        enc = model.encode(batch)
        t = model.slot_tokens(enc)
        idx, _ = model.generate(batch, encoding=enc, slot_tokens=t)
        base = model.generator.scores(enc.h_ad, t, enc.q_hat, batch.bids)
        for n in range(18):
            for factor in (1.5, 4.0, 50.0):
                bids = batch.bids.clone()
                bids[:, n] *= factor
                raised = model.generator.scores(enc.h_ad, t, enc.q_hat, bids)
                assert (raised[:, n] >= base[:, n]).all()
                torch.testing.assert_close(raised[:, torch.arange(18) != n], base[:, torch.arange(18) != n])
                new_idx, _ = model.generate(batch, bids=bids, encoding=enc, slot_tokens=t)
                for row in range(2):
                    if n in idx[row]:  # a winner stays a winner, in the same or an earlier slot
                        old_slot = (idx[row] == n).nonzero().item()
                        assert n in new_idx[row] and (new_idx[row] == n).nonzero().item() <= old_slot


def test_k_above_valid_candidates_raises(model):
    batch = make_batch(B=2, N=10, valid_counts=[2, 8])
    with pytest.raises(ValueError):
        model.generate(batch)


def test_payment_is_individually_rational():
    model = build()
    torch.manual_seed(5)
    for seed in range(3):
        batch = make_batch(B=4, N=16, seed=seed)
        scale = torch.exp(torch.randn(4, 16) * 4)  # bids from ~1e-5 to ~1e5
        batch = batch.replace(bids=batch.bids * scale)
        with torch.no_grad():
            for p in model.payment.parameters():
                p.normal_(0, 3)  # saturate the sigmoid both ways
            idx, _ = model.generate(batch)
            for q in (model.winner_ctr(batch, idx), torch.rand(4, 3), torch.ones(4, 3)):
                prices = model.pay(batch, idx, q)
                bids = batch.bids.gather(1, idx)
                assert (prices <= bids).all() and (prices >= 0).all()
            ids, payments = model.allocate(batch)
            assert (payments <= batch.bids.gather(1, idx)).all()


def test_other_winners():
    values = torch.tensor([[1.0, 2.0, 3.0]])
    assert other_winners(values, 3).tolist() == [[[2.0, 3.0], [1.0, 3.0], [1.0, 2.0]]]
    assert other_winners(values[:, :2], 3).tolist() == [[[2.0, 0.0], [1.0, 0.0]]]
    assert other_winners(values[:, :1], 1).shape == (1, 1, 0)


def test_evaluator_is_permutation_aware_and_accepts_shorter_lists(model):
    batch = make_batch(B=2, N=20, seed=6)
    with torch.no_grad():
        enc = model.encode(batch)
        idx, _ = model.generate(batch, encoding=enc)
        q = model.evaluate(batch, idx, encoding=enc)
        assert q.shape == (2, 3) and ((q > 0) & (q < 1)).all()
        reordered = model.evaluate(batch, idx[:, [2, 0, 1]], encoding=enc)
        assert not torch.allclose(reordered, q[:, [2, 0, 1]])
        assert model.evaluate(batch, idx[:, :2], encoding=enc).shape == (2, 2)


def test_post_training_gradients_reach_generator_evaluator_and_payment():
    model = build().train()
    batch = make_batch(B=2, N=20, seed=7)
    enc = model.encode(batch)
    enc_frozen = type(enc)(**{k: (v.detach() if torch.is_tensor(v) else v) for k, v in vars(enc).items()})
    idx, logz = model.generate(batch, sample_seed=3, encoding=enc_frozen)
    q = model.evaluate(batch, idx, encoding=enc_frozen)
    prices = model.pay(batch, idx, q.detach(), encoding=enc_frozen)
    (logz.sum() + q.sum() + prices.sum()).backward()
    for module in (model.generator, model.evaluator, model.payment):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in model.recformer.named_parameters():
        assert p.grad is None, f"RecFormer must stay untouched through a detached encoding: {name}"


def test_allocate_returns_candidate_ids_and_prices():
    for source in ("ctr_head", "evaluator"):  # the payment network's inputs (Eq. 19 pricing)
        model = build(payment_ctr_source=source, payment_rule="network")
        batch = make_batch(B=3, N=22, seed=8)
        ids, payments = model.allocate(batch)
        assert ids.shape == payments.shape == (3, 3)
        for row in range(3):
            valid_ids = set(batch.cand_ids[row][batch.cand_mask[row]].tolist())
            assert set(ids[row].tolist()) <= valid_ids and len(set(ids[row].tolist())) == 3
        assert (payments > 0).all()


def test_allocate_rejects_bad_bids(model):
    batch = make_batch(seed=9)
    bids = batch.bids.clone()
    row, col = batch.cand_mask.nonzero()[0].tolist()
    bids[row, col] = 0.0
    with pytest.raises(ValueError, match=rf"bids\[{row}, {col}\]"):
        model.allocate(batch.replace(bids=bids))


def test_gsp_ablation_ranks_by_ecpm_and_charges_next_score():
    q = torch.tensor([[0.1, 0.2, 0.0, 0.05, 0.4]])
    bids = torch.tensor([[1.0, 1.0, 0.0, 5.0, 0.1]])
    mask = torch.tensor([[True, True, False, True, True]])
    idx, logz, prices = gsp_allocation(q, bids, mask, 2)
    assert idx.tolist() == [[3, 1]]  # eCPM 0.1, 0.2, (masked), 0.25, 0.04
    torch.testing.assert_close(prices, torch.tensor([[0.2 / 0.05, 0.1 / 0.2]]))
    idx, _, prices = gsp_allocation(q, bids, mask, 4)
    assert prices[0, -1] == 0  # no loser left: the last winner pays the reserve 0
    tie_idx, tie_logz, _ = gsp_allocation(torch.ones(1, 4), torch.ones(1, 4), torch.ones(1, 4, dtype=torch.bool), 2)
    assert tie_idx.tolist() == [[0, 1]]  # ties break to the lower index
    torch.testing.assert_close(tie_logz, torch.log(torch.tensor([[1 / 4, 1 / 3]])))
    with pytest.raises(ValueError, match="fewer than K"):
        gsp_allocation(q, bids, mask, 5)
    model = build(allocation="gsp")
    batch = make_batch(B=2, N=20, seed=10)
    ids, payments = model.allocate(batch)
    enc = model.encode(batch)
    ecpm = (enc.q_hat * batch.bids).masked_fill(~batch.cand_mask, -1)
    assert torch.equal(batch.cand_ids.gather(1, ecpm.topk(3).indices), ids)
    assert (payments <= batch.bids.gather(1, ecpm.topk(3).indices) + 1e-6).all()
