"""The maths of egakit.training on hand-made cases: Eq. 20/21 masking, the RLAF reward of Eq. 22
(Y_−i re-run with y_i masked, also when a request has exactly K candidates), the baselines and
Eq. 23, and the payment phase's IR, regret search, Lagrangian (Eq. 24) and λ / ρ schedules."""
from __future__ import annotations

import math

import pytest
import torch

from egakit.model import EGAV1, EGAV1Config
from egakit.training import (
    LagrangeMultipliers,
    MisreportProblem,
    advantages,
    ex_post_regret,
    marginal_rewards,
    masked_bce_with_logits,
    payment_lagrangian,
    policy_gradient_loss,
    rho_at,
    rlaf_step,
    sample_seeds,
    truthful_outcome,
)
from lit_helpers import HAND_VOCAB, hand_batch

K = 3
Q0 = 0.2  # the evaluator's constant pCTR in the hand-made model


def hand_model(q_hat: float = 0.1, q_eval: float = Q0, pay_rate: float | None = None) -> EGAV1:
    """A tiny EGA-V1 made exact by hand: constant q̂ (CTR head), constant evaluator pCTR, zero slot
    tokens (so Eq. 17 ranks by e^{w_z}·q̂·b, i.e. by bid), and optionally a constant payment rate."""
    torch.manual_seed(0)
    config = EGAV1Config(d=8, n_heads=2, n_clusters=4, m=1, m_c=1, m_e=1, K=K, feature_emb_dim=4,
                         ctr_mlp=(8,), eval_mlp=(8,), pay_mlp=(8,), kernel_backend="torch")
    model = EGAV1(config, HAND_VOCAB)
    with torch.no_grad():
        last = model.ctr_head.rest[-1]
        last.weight.zero_()
        last.bias.fill_(math.log(q_hat / (1 - q_hat)))
        head = model.evaluator.head[-1]
        head.weight.zero_()
        head.bias.fill_(math.log(q_eval / (1 - q_eval)))
        model.generator.to_slot.weight.zero_()
        model.generator.to_slot.bias.zero_()
        if pay_rate is not None:
            pay = model.payment.net[-1]
            pay.weight.zero_()
            pay.bias.fill_(math.log(pay_rate / (1 - pay_rate)))
    return model.eval()


# ------------------------------------------------------------------------------------ Eq. 20 / 21
def test_masked_bce_counts_only_labelled_entries():
    logits = torch.tensor([[0.0, 100.0, float("inf")], [2.0, -1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    per = [math.log(2.0), math.log1p(math.exp(2.0)), math.log1p(math.exp(1.0))]
    assert masked_bce_with_logits(logits, target, mask, "label").item() == pytest.approx(sum(per) / 3, rel=1e-6)
    assert masked_bce_with_logits(logits, target, mask, "request").item() == pytest.approx(sum(per) / 2, rel=1e-6)
    empty = masked_bce_with_logits(logits, target, torch.zeros_like(mask))
    assert empty.item() == 0.0


# ------------------------------------------------------------------------------------ Eq. 22
def _rewards(model, batch, idx):
    with torch.no_grad():
        enc = model.encode(batch)
        t = model.slot_tokens(enc)
    return marginal_rewards(model, batch, enc, t, torch.tensor(idx))


def test_rlaf_reward_is_the_marginal_value_against_the_best_list_without_the_ad():
    """Bids 5, 4, 3, 2, 1 and constant q: the greedy list is ads [0, 1, 2]; without ad i the best
    list takes ad 3 (bid 2) instead, so r_i = q·(b_i − 2) (Eq. 22)."""
    model = hand_model()
    batch = hand_batch([[5.0, 4.0, 3.0, 2.0, 1.0]], K)
    with torch.no_grad():
        assert model.generate(batch)[0].tolist() == [[0, 1, 2]]
    out = _rewards(model, batch, [[0, 1, 2]])
    assert out.value.item() == pytest.approx(Q0 * 12)
    assert out.value_without[0].tolist() == pytest.approx([Q0 * 9, Q0 * 10, Q0 * 11])
    assert out.reward[0].tolist() == pytest.approx([Q0 * 3, Q0 * 2, Q0 * 1])


def test_rlaf_reward_of_a_sampled_non_greedy_list():
    """Y = [4, 0, 1] (bids 1, 5, 4): V = 10q; Y_−0 = [0, 1, 2] (12q), Y_−1 = [1, 2, 3] (9q),
    Y_−2 = [0, 2, 3] (10q) → r = (−2q, q, 0)."""
    out = _rewards(hand_model(), hand_batch([[5.0, 4.0, 3.0, 2.0, 1.0]], K), [[4, 0, 1]])
    assert out.reward[0].tolist() == pytest.approx([-2 * Q0, Q0, 0.0], abs=1e-6)


def test_rlaf_reward_with_exactly_k_valid_candidates_uses_a_shorter_list():
    """Row 0 has exactly K valid ads: Y_−i holds the other K − 1, so r_i = q·b_i. Row 1 (five ads)
    in the same batch keeps full-length counterfactual lists."""
    batch = hand_batch(
        [[5.0, 4.0, 3.0, 9.0, 9.0], [5.0, 4.0, 3.0, 2.0, 1.0]], K,
        valid=[[True, True, True, False, False], [True] * 5],
    )
    out = _rewards(hand_model(), batch, [[0, 1, 2], [0, 1, 2]])
    assert out.reward[0].tolist() == pytest.approx([Q0 * 5, Q0 * 4, Q0 * 3])
    assert out.reward[1].tolist() == pytest.approx([Q0 * 3, Q0 * 2, Q0 * 1])


# ------------------------------------------------------------------------------------ Eq. 23
def test_baselines_and_policy_gradient_loss():
    rewards = torch.tensor([[[1.0, 2.0]], [[3.0, 6.0]]])  # S=2, B=1, K=2
    greedy = torch.tensor([[1.0, 1.0]])
    assert advantages(rewards, "none").tolist() == rewards.tolist()
    assert advantages(rewards, "greedy", greedy).tolist() == [[[0.0, 1.0]], [[2.0, 5.0]]]
    assert advantages(rewards, "samples").tolist() == [[[-2.0, -4.0]], [[2.0, 4.0]]]  # leave-one-out
    with pytest.raises(ValueError, match="num_samples >= 2"):
        advantages(rewards[:1], "samples")
    logz = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]], requires_grad=True)
    adv = torch.tensor([[1.0, 2.0], [-2.0, 4.0]])
    loss = policy_gradient_loss(logz, adv)
    assert loss.item() == pytest.approx(-((-1 - 4) + (1 - 1)) / 2)
    loss.backward()
    assert logz.grad.tolist() == [[-0.5, -1.0], [1.0, -2.0]]


def test_rlaf_step_trains_the_generator_only_and_is_reproducible():
    model = hand_model()
    batch = hand_batch([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]], K)
    with torch.no_grad():
        enc = model.encode(batch)
    seeds = sample_seeds(7, step=3, num_samples=2)
    assert seeds == [13, 14]
    first = rlaf_step(model, batch, enc, seeds, "samples")
    again = rlaf_step(model, batch, enc, seeds, "samples")
    assert torch.equal(first.idx, again.idx)
    first.loss.backward()
    assert model.generator.w_z.grad is not None
    assert all(p.grad is None for p in model.evaluator.parameters())
    assert all(p.grad is None for p in model.recformer.parameters())


# ------------------------------------------------------------------------------------ payment
def test_payments_never_exceed_bids_truthful_or_misreported():
    """IR (Eq. 19): 0 ≤ p ≤ b for a random payment network, for truthful and misreported bids."""
    torch.manual_seed(1)
    batch = hand_batch((torch.rand(4, 6) * 5 + 0.1).tolist(), K)
    for rate in (None, 0.999):
        model = hand_model(pay_rate=rate)
        with torch.no_grad():
            enc = model.encode(batch)
            t = model.slot_tokens(enc)
            out = truthful_outcome(model, batch, enc, t)
            assert bool(((out.prices >= 0) & (out.prices <= out.bids)).all())
            for gamma in (0.3, 1.7):
                bids = batch.bids * gamma
                idx, _ = model.generate(batch, bids=bids, encoding=enc)
                prices = model.pay(batch, idx, model.winner_ctr(batch, idx, encoding=enc), bids=bids, encoding=enc)
                assert bool((prices <= bids.gather(1, idx)).all())


def test_regret_of_a_first_price_like_network_is_found_by_shading():
    """With p̃ ≈ 1 (pay your bid), truthful utility is ≈ 0 and shading the bid while keeping a slot
    pays: the grid finds γ < 1, the ascent shades further, and regret ≈ best (1 − γ)·v·q."""
    model = hand_model(pay_rate=0.999)
    batch = hand_batch([[5.0, 4.0, 3.0, 1.0, 0.5]], K)
    with torch.no_grad():
        enc = model.encode(batch)
        t = model.slot_tokens(enc)
    grid = ex_post_regret(model, batch, enc, t)
    ascent = ex_post_regret(model, batch, enc, t, ascent_steps=10, ascent_lr=0.05)
    assert bool((grid.regret > 0).all())
    assert bool((grid.search.gamma < 1).all())
    assert bool((ascent.regret >= grid.regret - 1e-6).all())
    # the last winner (bid 3) keeps a slot down to just above the best loser's bid 1: γ* ≥ 1/3
    assert grid.search.gamma[0, 2].item() == pytest.approx(0.4)
    expected = (1 - 0.4 * 0.999) * 3.0 * Q0 - (1 - 0.999) * 3.0 * Q0
    assert grid.regret[0, 2].item() == pytest.approx(expected, rel=1e-4)
    grid.regret.sum().backward()
    assert model.payment.net[-1].bias.grad is not None


def test_misreport_rows_can_be_chunked():
    model = hand_model()
    batch = hand_batch([[5.0, 4.0, 3.0, 2.0, 1.0], [2.0, 1.0, 3.0, 5.0, 4.0]], K)
    with torch.no_grad():
        enc = model.encode(batch)
        t = model.slot_tokens(enc)
        idx, _ = model.generate(batch, encoding=enc)
        whole = MisreportProblem(model, batch, enc, t, idx)
        chunked = MisreportProblem(model, batch, enc, t, idx, max_rows=4)
        m = whole.value * 0.7
        assert torch.allclose(whole.utility(m), chunked.utility(m))


def test_lagrangian_and_schedules():
    revenue = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    regret = torch.tensor([[0.5, 0.0], [1.0, 2.0]])
    lam = torch.tensor([2.0, 1.0])
    # per request: (3 − 1 − 0.5·ρ·0.25), (3 − (2 + 2) − 0.5·ρ·5) with ρ = 2
    expected = -((3 - 1 - 0.25) + (3 - 4 - 5)) / 2
    assert payment_lagrangian(revenue, regret, lam, rho=2.0).item() == pytest.approx(expected)
    assert rho_at(0, 1.0, 0.5, 10, 2.0) == 1.0
    assert rho_at(25, 1.0, 0.5, 10, 2.0) == 2.0
    assert rho_at(1000, 1.0, 0.5, 10, 2.0) == 2.0
    multipliers = LagrangeMultipliers(K=2, init=5.0)
    multipliers.accumulate(torch.tensor([0.2, 0.0]))
    multipliers.accumulate(torch.tensor([0.4, 0.0]))
    assert multipliers.update(rho=10.0).tolist() == pytest.approx([8.0, 5.0])
    assert int(multipliers.batches) == 0 and multipliers.update(rho=10.0).tolist() == pytest.approx([8.0, 5.0])
