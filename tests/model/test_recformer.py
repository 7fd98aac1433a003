"""RecFormer variants: shapes, invariance to candidate order and to extra padding, point-wise −gcf."""
import pytest
import torch

from egakit.model import EGAV1, VARIANTS, EGAV1Config, RecFormer, fusion_layers

from conftest import VOCAB_SIZES, make_batch, pad_behaviours, pad_candidates, permute_candidates, small_config

# Invariance tests run in float64 so that a real leak cannot hide inside float32 rounding.
ATOL = dict(atol=1e-9, rtol=1e-9)


def encoder(variant: str, train: bool = False, **overrides) -> EGAV1:
    torch.manual_seed(0)
    model = EGAV1(small_config(variant=variant, **overrides), VOCAB_SIZES).double()
    if not train:
        # A few training passes so eval-mode Dice uses non-default running statistics.
        for seed in range(2):
            model(make_batch(seed=100 + seed))
    return model.train(train)


def outputs(model, batch):
    enc = model.encode(batch)
    return enc.h_ad, enc.h_usr, enc.e_u, enc.q_hat


def test_fusion_layers_and_m_k():
    assert fusion_layers(6, 2) == (2, 4, 6)
    assert fusion_layers(5, 2) == (2, 4, 5)
    assert fusion_layers(6, 4) == (4, 6)
    config = EGAV1Config()
    assert (config.m, config.m_c, config.m_k, config.fusion_layers) == (6, 2, 3, (2, 4, 6))


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes(variant):
    model = encoder(variant)
    batch = make_batch(B=3, N=20, L=7)
    with torch.no_grad():
        h_ad, h_usr, e_u, q_hat = outputs(model, batch)
    assert h_ad.shape == (3, 20, 16) and h_usr.shape == (3, 7, 16) and e_u.shape == (3, 16)
    assert q_hat.shape == (3, 20)
    assert ((q_hat > 0) & (q_hat < 1))[batch.cand_mask].all() and (q_hat[~batch.cand_mask] == 0).all()


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_invariant_to_candidate_order(variant, train):
    model = encoder(variant, train)
    batch = make_batch(N=30, seed=3)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        h_ad, h_usr, e_u, q_hat = outputs(model, batch)
        p_ad, p_usr, p_eu, p_q = outputs(model, permute_candidates(batch, perm))
    valid = batch.cand_mask[:, perm]
    torch.testing.assert_close(p_ad[valid], h_ad[:, perm][valid], **ATOL)
    torch.testing.assert_close(p_q, q_hat[:, perm], **ATOL)
    torch.testing.assert_close(p_usr[batch.bhv_mask], h_usr[batch.bhv_mask], **ATOL)
    torch.testing.assert_close(p_eu, e_u, **ATOL)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_invariant_to_extra_padding(variant, train):
    model = encoder(variant, train)
    batch = make_batch(N=24, L=8, seed=4)
    padded = pad_behaviours(pad_candidates(batch, 17), 5)
    with torch.no_grad():
        h_ad, h_usr, e_u, q_hat = outputs(model, batch)
        g_ad, g_usr, g_eu, g_q = outputs(model, padded)
    torch.testing.assert_close(g_ad[:, :24][batch.cand_mask], h_ad[batch.cand_mask], **ATOL)
    torch.testing.assert_close(g_q[:, :24], q_hat, **ATOL)
    assert (g_q[:, 24:] == 0).all()
    torch.testing.assert_close(g_usr[:, :8][batch.bhv_mask], h_usr[batch.bhv_mask], **ATOL)
    torch.testing.assert_close(g_eu, e_u, **ATOL)


def _change_other_candidates(batch, keep: int):
    """New random features for every candidate but ``keep`` (a different candidate set)."""
    feats = batch.cand_feats.clone()
    others = torch.arange(batch.num_candidates) != keep
    feats[:, others] = make_batch(B=batch.batch_size, N=batch.num_candidates, seed=999).cand_feats[:, others]
    return batch.replace(cand_feats=feats)


def test_no_gcf_is_point_wise_and_full_is_set_aware():
    batch = make_batch(N=20, seed=5, valid_counts=[20, 20])
    changed = _change_other_candidates(batch, keep=0)
    with torch.no_grad():
        point_wise = encoder("no_gcf")
        torch.testing.assert_close(point_wise.pctr(changed)[:, 0], point_wise.pctr(batch)[:, 0], **ATOL)
        set_aware = encoder("full")
        assert not torch.allclose(set_aware.pctr(changed)[:, 0], set_aware.pctr(batch)[:, 0], atol=1e-4)


def test_variant_layouts():
    def build(variant):
        return RecFormer(16, 2, 8, m=3, m_c=2, variant=variant)

    full = build("full")
    assert list(full.fusions) == ["2", "3"] and full.final_fusion is None
    assert all(f.target is not None and f.context is not None for f in full.fusions.values())
    assert all(f.context is None for f in build("ta_only").fusions.values())
    assert all(f.target is None for f in build("ca_only").fusions.values())
    no_gcf = build("no_gcf")
    assert all(not f.target.query_gating and f.context is None for f in no_gcf.fusions.values())
    no_mif = build("no_mif")
    assert len(no_mif.fusions) == 0 and len(no_mif.bhv_layers) == 0 and not no_mif.final_fusion.target.query_gating
    late = build("late_fusion")
    assert len(late.fusions) == 0 and len(late.bhv_layers) == 3 and late.final_fusion is not None
    with pytest.raises(ValueError, match="variant"):
        build("early_fusion")
