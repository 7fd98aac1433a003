"""Appendix A.1 formulas (Eq. 25–33) against values worked out by hand at small integers."""
import pytest

from egakit.flops import paper


def test_block_eq25():
    # 4·L²·d + 24·L·d² at L=2, d=3: 4·4·3 + 24·2·9 = 48 + 432
    assert paper.block(L=2, d=3) == 480


def test_block2_eq26():
    # 4·L1·L2·d + 20·L1·d² + 4·L2·d² at L1=2, L2=3, d=1: 24 + 40 + 12
    assert paper.block2(L1=2, L2=3, d=1) == 76


def test_block2_with_equal_lengths_is_not_block():
    # Eq. 26 keeps 20 + 4 = 24 L d² but the same 4 L² d attention: equal to Eq. 25 when L1 = L2.
    assert paper.block2(L1=4, L2=4, d=3) == paper.block(L=4, d=3)


def test_pre_rank_eq27():
    # N·d + 2·L·d² at N=5, L=2, d=3: 15 + 36
    assert paper.pre_rank(N=5, L=2, d=3) == 51


def test_rank_eq28():
    # m_r[4·N_r·(L+1)²·d + 24·N_r·(L+1)·d²] at m_r=2, N_r=3, L=1, d=2: 2·[4·3·4·2 + 24·3·2·4] = 2·[96 + 576]
    assert paper.rank(m_r=2, N_r=3, L=1, d=2) == 1344


def test_mca_eq29():
    # pre(N=5, L=1, d=2) = 10 + 8 = 18; rank = 1344
    assert paper.mca(N=5, L=1, d=2, m_r=2, N_r=3) == 1362


def test_gcf_eq30():
    # m(6·N·N_c·d + 4·N·N_c·d + 24·N·d²) at m=2, N=3, N_c=2, d=1: 2·(36 + 24 + 72)
    assert paper.gcf(m=2, N=3, N_c=2, d=1) == 264


def test_mif_eq31():
    # m_k(N+L)·N_c·d at m_k=2, N=3, L=4, N_c=5, d=1: 2·7·5
    assert paper.mif(m_k=2, N=3, L=4, N_c=5, d=1) == 70


def test_auf_eq32():
    # m_e(4·N_a²·d + 24·N_a·d²) + m_e(4·K·N_a·d + 18·K·d² + 4·N_a·d²) at m_e=1, N_a=2, K=1, d=1:
    # (16 + 48) + (8 + 18 + 8) = 64 + 34
    assert paper.auf(m_e=1, N_a=2, K=1, d=1) == 98


def test_ega_v1_eq33_literal_and_both_stacks():
    # gcf(2,3,2,1) = 264; mif(2,3,4,2,1) = 2·7·2 = 28; auf(1,2,1,1) = 98 → 390
    kw = dict(m=2, N=3, L=4, N_c=2, d=1, m_k=2, m_e=1, N_a=2, K=1)
    assert paper.ega_v1(**kw) == 390
    # + gcf over the L=4 behaviours: 2·(6·8 + 4·8 + 24·4) = 352
    assert paper.ega_v1(**kw, gcf_both_stacks=True) == 390 + 352


def test_early_fusion():
    # m·N·block(L+1, d) at m=2, N=3, L=1, d=1: 6·(4·4 + 24·2) = 6·64
    assert paper.early_fusion(m=2, N=3, L=1, d=1) == 384
    # identical to the ranking stage Eq. 28 with m_r = m, N_r = N
    assert paper.early_fusion(m=3, N=7, L=5, d=4) == paper.rank(m_r=3, N_r=7, L=5, d=4)


def test_late_fusion():
    # m·block(L, d) + block2(N, L, d) at m=2, N=3, L=1, d=1: 2·(4 + 24) + (12 + 60 + 4)
    assert paper.late_fusion(m=2, N=3, L=1, d=1) == 132


def test_interval_blocks_is_ceiling():
    assert paper.interval_blocks(m=10, m_c=2) == 5
    assert paper.interval_blocks(m=5, m_c=2) == 3
    with pytest.raises(ValueError):
        paper.interval_blocks(m=4, m_c=0)


def test_float_arguments_allowed():
    assert paper.rank(m_r=1, N_r=0.5, L=0, d=1) == pytest.approx(0.5 * (4 + 24))


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bad_values_raise(bad):
    with pytest.raises(ValueError, match="d must be"):
        paper.block(L=2, d=bad)


def test_non_numbers_raise():
    with pytest.raises(TypeError):
        paper.block(L=True, d=2)
    with pytest.raises(TypeError):
        paper.block(L="2", d=2)
