"""The paper's two FLOP claims, recomputed from Eq. 25–33: numbers and verdicts."""
import json

import pytest

from egakit.flops import claims, paper


def test_mif_vs_fusion_numbers():
    r = claims.mif_vs_fusion()
    assert r.params["m_k"] == 5
    # MIF: 5·(10^5 + 10^3)·100·128
    assert r.flops["mif"] == 6_464_000_000
    # early: 10·10^5·(4·1001²·128 + 24·1001·128²) = 10^6·(513,024,512 + 393,609,216)
    assert r.flops["early_fusion"] == 906_633_728 * 10**6
    # late: 10·(4·10^6·128 + 24·10^3·128²) + (4·10^8·128 + 20·10^5·128² + 4·10^3·128²)
    assert r.flops["late_fusion"] == 9_052_160_000 + 84_033_536_000
    early, late = r.checks
    assert early.values["formulas"] == pytest.approx(6_464_000_000 / 906_633_728e6)
    assert early.values["big_o"] == pytest.approx(6_464_000_000 / (10 * 10**5 * 1001**2 * 128))
    assert late.values["big_o"] == pytest.approx(6_464_000_000 / ((10**8 + 10 * 10**6) * 128))
    assert late.values["formulas"] == pytest.approx(6_464_000_000 / 93_085_696_000)


def test_mif_vs_fusion_verdict():
    r = claims.mif_vs_fusion()
    early, late = r.checks
    assert not r.holds
    assert not early.holds("formulas") and not early.holds("big_o")
    assert late.holds("big_o") and not late.holds("formulas")  # "half" only in O-notation
    assert "does NOT follow" in r.verdict and "O-notation" in r.verdict
    assert "1.4e+05" in r.verdict  # 1/140,000 from the formulas


def test_ega_vs_mca_numbers():
    r = claims.ega_vs_mca()
    (c,) = r.checks
    # approximation = m_k d / (2 m_r α L) = 5·128 / (2·10·0.033·1000) = 32/33
    assert c.values["approximation"] == pytest.approx(32 / 33)
    assert c.holds("approximation")
    assert r.flops["gcf"] == 10 * (10 * 10**5 * 100 * 128 + 24 * 10**5 * 128**2)
    exact = r.flops["ega_v1"] / r.flops["mca"]
    assert c.values["formulas"] == pytest.approx(exact)
    assert c.values["formulas"] == pytest.approx(0.01764, rel=1e-3)
    assert not r.holds
    # the N → ∞ limit is the ratio of per-candidate costs
    assert c.values["asymptotic"] == pytest.approx(5_276_160 / (128 + 10 * 0.033 * 906_633_728))


def test_ega_vs_mca_verdict_and_solutions():
    r = claims.ega_vs_mca()
    assert "does NOT follow" in r.verdict and "0.01764" in r.verdict
    L_star = r.extras["L_at_claim"]
    assert L_star is not None and 30 < L_star < 50
    kw = dict(m=10, N=10**5, N_c=100, d=128, m_k=5, m_e=3, N_a=5, K=5)
    at_L = paper.ega_v1(L=L_star, **kw) / paper.mca(N=10**5, L=L_star, d=128, m_r=10, N_r=3300)
    assert at_L == pytest.approx(0.97, rel=1e-6)
    assert r.extras["d_at_claim"] is None  # no d reaches 0.97 at L = 1000
    assert r.extras["d_over_L_for_approximation"] == pytest.approx(0.97 * 2 * 10 * 0.033 / 5)
    assert r.extras["approximation_literal_m_eq_2m_c"] == pytest.approx(2 * 128 / (2 * 10 * 0.033 * 1000))


def test_claims_serialise():
    for r in claims.paper_claims():
        json.dumps(r.to_dict())


def test_claim_that_holds_says_so():
    # At L = 39 the exact ratio is within 10 % of 0.97: the verdict must say it holds.
    r = claims.ega_vs_mca(L=39)
    assert r.holds and "The claim holds" in r.verdict
