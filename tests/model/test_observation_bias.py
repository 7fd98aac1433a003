"""Observation-aware pre-training loss (egakit.training.label_bias) and the model's ObservationRates."""
import pytest
import torch

from egakit.model import EGAV1
from egakit.model.heads import ObservationRates
from egakit.training.label_bias import label_source, log1mexp, observation_aware_loss, observed_click_bce
from egakit.training.losses import masked_bce_with_logits

from conftest import VOCAB_SIZES, make_batch, small_config


def test_log1mexp_is_accurate_near_zero_and_far_away():
    x = torch.tensor([-1e-7, -1e-3, -0.5, -5.0, -50.0], dtype=torch.float64)
    reference = torch.log(-torch.expm1(x))  # float64; rounds log(1 − e⁻⁵⁰) to 0
    torch.testing.assert_close(log1mexp(x), reference, rtol=1e-12, atol=1e-20)
    assert log1mexp(torch.tensor([-1e-7], dtype=torch.float32)).isfinite().all()


def test_rate_one_everywhere_is_plain_eq20():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, generator=g) * 4
    labels = (torch.rand(3, 9, generator=g) < 0.3).float()
    mask = torch.rand(3, 9, generator=g) < 0.7
    for reduction in ("label", "request"):
        torch.testing.assert_close(
            observed_click_bce(logits, torch.zeros(3, 9), labels, mask, reduction),
            masked_bce_with_logits(logits, labels, mask, reduction),
        )


def test_loss_is_the_bernoulli_likelihood_of_rate_times_ctr():
    logits = torch.tensor([[0.3, -2.0, 1.5]])
    log_rate = torch.log(torch.tensor([[1.0, 0.4, 0.25]]))
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    p = torch.sigmoid(logits) * log_rate.exp()
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    torch.testing.assert_close(observed_click_bce(logits, log_rate, labels, mask), expected)


def test_sources_map_exposed_slots_and_platform_labels():
    exposed = torch.tensor([[0, 2, -1, 1, -1]])
    assert label_source(exposed, K=3).tolist() == [[0, 2, 3, 1, 3]]


def test_learned_rates_recover_the_true_observation_rates():
    """Clicks drawn as β_s · q with known q: fitting only the rates recovers β (slot 0 anchored)."""
    torch.manual_seed(0)
    K, n = 3, 60_000
    true_rates = torch.tensor([1.0, 0.6, 0.35, 0.2])  # slots 0..2, platform
    logit = torch.randn(1, n) - 1.0
    exposed = torch.randint(-1, K, (1, n))
    source = label_source(exposed, K)
    clicks = (torch.rand(1, n) < torch.sigmoid(logit) * true_rates[source]).float()
    rates = ObservationRates(K)
    opt = torch.optim.Adam(rates.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = observation_aware_loss(logit, rates.log_rates(), clicks, torch.ones(1, n, dtype=torch.bool), exposed)
        loss.backward()
        opt.step()
    torch.testing.assert_close(rates.rates().detach(), true_rates, atol=0.03, rtol=0)
    assert rates.position_ctr().tolist() == sorted(rates.position_ctr().tolist(), reverse=True)


def test_position_ctr_is_non_increasing_even_when_rates_are_not():
    rates = ObservationRates(4)
    with torch.no_grad():
        rates.logit_rate.copy_(torch.logit(torch.tensor([0.5, 0.7, 0.3, 0.9])))
    assert rates.position_ctr().tolist() == pytest.approx([1.0, 0.5, 0.5, 0.3])


def test_ad_identity_embedding_changes_only_what_it_should():
    torch.manual_seed(0)
    model = EGAV1(small_config(id_buckets=64), VOCAB_SIZES).eval()
    batch = make_batch(B=2, N=12, seed=1)
    q = model.pctr(batch)
    other = batch.replace(cand_ids=batch.cand_ids + 1)  # same features, other identities
    assert not torch.allclose(model.pctr(other)[batch.cand_mask], q[batch.cand_mask])
    perm = torch.randperm(12)
    permuted = batch.replace(**{f: getattr(batch, f)[:, perm] for f in ("cand_ids", "cand_feats", "cand_mask", "bids")})
    torch.testing.assert_close(model.pctr(permuted), q[:, perm], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="id_buckets"):
        small_config(id_buckets=-1)
