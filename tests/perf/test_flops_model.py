"""egakit.flops.model against FLOPs worked out by hand on tiny sizes (2·M·N·K per matmul)."""
import pytest

from egakit.flops import model as fm
from egakit.flops import paper
from egakit.model import EGAV1Config


def test_flops_arithmetic_and_backward_multipliers():
    f = fm.Flops(dense=1, aggregate=8, attention=4, slot=2)
    assert f.forward == 15
    # dense ×2, cluster_aggregate 18/8, SDPA 10/4, slot_argmax 6/2
    assert f.backward == 2 + 18 + 10 + 6
    assert f.train == 15 + 36
    assert (f + f).forward == 30 and (3 * f).forward == 45 and (f * 3).forward == 45
    assert f.total("forward") == 15 and f.total("train") == 51
    with pytest.raises(ValueError):
        f.total("inference")


def test_linear_and_mlp():
    assert fm.linear(3, 4, 5).forward == 2 * 3 * 4 * 5
    # 7 → 5 → 1 over 3 rows: 2·3·7·5 + 2·3·5·1
    assert fm.mlp(3, 7, (5,), 1).forward == 210 + 30


def test_feature_embedding():
    # ads 2·10·(5·2)·4 + behaviours 2·6·(5·2)·4 + user 2·1·(5·2)·4
    assert fm.feature_embedding(N=10, L=6, d=4, feature_emb_dim=2).forward == 800 + 480 + 80
    # + cross features 2·10·(3·2)·4
    assert fm.feature_embedding(N=10, L=6, d=4, feature_emb_dim=2, n_cross_fields=3).forward == 1360 + 480


def test_cluster_attention_self():
    # N=10, d=4, H=2 (d_h=2), N_c=3
    f = fm.cluster_attention(N_q=10, d=4, n_heads=2, n_clusters=3)
    to_q, to_kv, out = 2 * 10 * 4 * 4, 2 * 10 * 4 * 8, 2 * 10 * 4 * 4
    headwise = 4 * (2 * 3 * 4 * 2)  # f_k2(A_q), f_k2(A_k), f_v2(A_q), f_v2(A_v): 2·N_c·d·d_h each
    affinity = 2 * 3 * 3 * 4  # A_q A_kᵀ per head: 2·H·N_c·N_c·d_h
    gates = 2 * (2 * 2 * 3 * 3)  # two Linear(N_c → 1) on (H, N_c, N_c)
    assert f.dense == to_q + to_kv + out + headwise + affinity + gates == 1616
    assert f.aggregate == 8 * 10 * 3 * 4 == 960
    assert f.attention == 4 * 10 * 3 * 4 == 480
    assert f.slot == 0


def test_cluster_attention_cross_with_and_without_query_gating():
    gated = fm.cluster_attention(N_q=5, N_kv=10, d=4, n_heads=2, n_clusters=3)
    assert gated.dense == 160 + 640 + 160 + 192 + 72 + 72
    assert gated.aggregate == 8 * 10 * 3 * 4 + 8 * 5 * 3 * 4  # keys' and queries' own aggregation
    assert gated.attention == 4 * 5 * 3 * 4
    plain = fm.cluster_attention(N_q=5, N_kv=10, d=4, n_heads=2, n_clusters=3, query_gating=False)
    assert plain.dense == 160 + 640 + 160 + 2 * 48
    assert plain.aggregate == 960


def test_gcf_layer_and_its_per_candidate_cost_against_eq30():
    assert fm.feed_forward(N=10, d=4, ffn_mult=4).forward == 2 * (2 * 10 * 4 * 16)
    assert fm.gcf_layer(N=10, d=4, n_heads=2, n_clusters=3).forward == 3056 + 2560
    # Per extra candidate: 12·N_c·d (8 aggregation + 4 attention) + 24·d² — Eq. 30 has 10·N_c·d + 24·d².
    d, n_c = 128, 128
    per_candidate = (fm.gcf_layer(N=2000, d=d, n_heads=4, n_clusters=n_c).forward
                     - fm.gcf_layer(N=1000, d=d, n_heads=4, n_clusters=n_c).forward) / 1000
    assert per_candidate == 12 * n_c * d + 24 * d * d
    assert paper.gcf(m=1, N=1, N_c=n_c, d=d) == 10 * n_c * d + 24 * d * d


def test_mif_exchange_is_target_plus_context():
    sizes = dict(d=4, n_heads=2, n_clusters=3)
    ta = fm.cluster_attention(N_q=10, N_kv=6, **sizes)
    ca = fm.cluster_attention(N_q=6, N_kv=10, **sizes)
    assert fm.mif_exchange(N=10, L=6, **sizes) == ta + ca
    assert fm.mif_exchange(N=10, L=6, context=False, **sizes) == ta


def test_recformer_full_and_variants():
    sizes = dict(d=4, n_heads=2, n_clusters=3)
    gcf_n, gcf_l = fm.gcf_layer(N=10, **sizes), fm.gcf_layer(N=6, **sizes)
    mif = fm.mif_exchange(N=10, L=6, **sizes)
    extra = fm.linear(1, 4, 4) + fm.linear(1, 8, 4)  # user broadcast + user summary
    # m = 3, m_c = 2: fusions after layers 2 and 3
    assert fm.recformer(N=10, L=6, m=3, m_c=2, **sizes) == 3 * gcf_n + 3 * gcf_l + 2 * mif + extra
    late = fm.recformer(N=10, L=6, m=3, m_c=2, variant="late_fusion", **sizes)
    final_ta = fm.mif_exchange(N=10, L=6, context=False, point_wise_target=True, **sizes)
    assert late == 3 * gcf_n + 3 * gcf_l + final_ta + extra
    no_mif = fm.recformer(N=10, L=6, m=3, m_c=2, variant="no_mif", **sizes)
    assert no_mif == 3 * gcf_n + final_ta + extra
    with pytest.raises(ValueError, match="variant"):
        fm.recformer(N=10, L=6, m=3, m_c=2, variant="bogus", **sizes)


def test_heads_generator_evaluator_payment():
    # MLP_ctr (5, 2) on N=10, d=4: ads 2·10·4·5, user 2·4·5, 5→2 and 2→1 over N
    assert fm.ctr_head(N=10, d=4, ctr_mlp=(5, 2)).forward == 400 + 40 + 200 + 40
    assert fm.slot_scores(N=10, d=4, K=3).slot == 2 * 10 * 3 * 4
    block = fm.cluster_attention(N_q=3, N_kv=10, d=4, n_heads=2, n_clusters=3) + fm.feed_forward(N=3, d=4)
    expected = fm.linear(1, 4, 4) + 2 * block + fm.linear(3, 4, 4) + fm.slot_scores(N=10, d=4, K=3)
    assert fm.generator(N=10, d=4, n_heads=2, n_clusters=3, K=3, m_e=2) == expected
    # project 2·3·12·4; block: QKV 2·3·4·12, attention 4·3·3·4, out 2·3·4·4, FFN 768; head 120 + 30
    assert fm.evaluator(d=4, n_heads=2, K=3, m_e=1, eval_mlp=(5,)).forward == 288 + 288 + 144 + 96 + 768 + 150
    # MLP_pay over [h (4); q (1); b_-i (2)] = 7 inputs, K = 3 rows
    assert fm.payment(d=4, K=3, pay_mlp=(5,)).forward == 240


def test_inference_total_and_for_config():
    c = EGAV1Config(d=8, n_heads=2, n_clusters=4, m=2, m_c=1, m_e=1, K=3, feature_emb_dim=2,
                    ctr_mlp=(4,), eval_mlp=(4,), pay_mlp=(4,))
    total = fm.for_config(fm.ega_v1_inference, c, N=20, L=5)  # critical-bid prices (the default)
    base = fm.for_config(fm.encode, c, N=20, L=5) + fm.for_config(fm.generator, c, N=20)
    assert total == base + fm.for_config(fm.critical_payment, c, N=20)
    c = EGAV1Config(**{**c.__dict__, "payment_rule": "network"})  # Eq. 19's payment network
    parts = base + fm.for_config(fm.payment, c)
    assert fm.for_config(fm.ega_v1_inference, c, N=20, L=5) == parts
    c_id = EGAV1Config(**{**c.__dict__, "id_buckets": 64})
    assert fm.for_config(fm.encode, c_id, N=20, L=5).forward == (
        fm.for_config(fm.encode, c, N=20, L=5).forward + 2 * 20 * c.feature_emb_dim * c.d
    )
    c_eval = EGAV1Config(**{**c.__dict__, "payment_ctr_source": "evaluator"})
    assert fm.for_config(fm.ega_v1_inference, c_eval, N=20, L=5) == parts + fm.for_config(fm.evaluator, c)
    c_gsp = EGAV1Config(**{**c.__dict__, "allocation": "gsp"})
    assert fm.for_config(fm.ega_v1_inference, c_gsp, N=20, L=5) == fm.for_config(fm.encode, c, N=20, L=5)
    # B requests cost B times one request
    assert fm.for_config(fm.ega_v1_inference, c, N=20, L=5, B=3).forward == 3 * parts.forward
