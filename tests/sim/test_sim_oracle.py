"""The oracle (docs/design.md §1, §6): arithmetic on a hand-made world, the RequestBatch API on the tiny
world, clear errors, and world_stats."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from egakit.batch import RequestBatch
from egakit.errors import WorldDataError
from egakit.sim import Oracle, read_requests, world_stats
from egakit.sim.click_model import ClickParams, ClickTruth, TruthTables
from egakit.sim.geo import CityGrid, PointIndex

PARAMS = ClickParams(c0=-2.0, lambda_ext=0.5, lambda_set=0.3, strong_quality=0.3, posbias_decay=1.0 / 3.0,
                     distance_weight=1.0)
AD_IDS = np.array([10, 20, 30])
VALUES = np.array([2.0, 1.0, 3.0], dtype=np.float32)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture
def hand_oracle() -> Oracle:
    """Three ads at the request's place, one user with no interest, no hour effect.

    Ad 10: latent e0, quality .5. Ad 20: latent e1 (orthogonal to all). Ad 30: latent
    .8 e0 + .6 e2 (cos .8 with ad 10, same category 0; ad 10 is a strong rival (quality ≥ .3), so
    ad 30's crowding is log1p(1) and ad 10's is 0). Ad 20 is alone in category 1.
    """
    centres = np.eye(3, 4, dtype=np.float32)
    latent = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0.8, 0, 0.6, 0]], dtype=np.float32)
    quality = np.array([0.5, 0.0, 0.0], dtype=np.float32)
    truth = ClickTruth(PARAMS, centres, np.zeros((24, 2), dtype=np.float32), radius=1.0)
    xy = np.full((3, 2), 0.5, dtype=np.float32)
    tables = TruthTables.from_numpy(
        truth, latent=latent, quality=quality, category=np.zeros(3, np.int64),
        creative_attr=np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]], np.float32),
        creative_count=np.array([1, 1, 2]), xy=xy, interest=np.zeros((1, 4), np.float32),
        sensitivity=np.ones(1, np.float32),
    )
    grid = CityGrid(1, 1.0, 1.0)
    return Oracle(tables, AD_IDS, np.array([7]), VALUES, grid, PointIndex(grid, xy[:, 0], xy[:, 1]),
                  np.array([0, 1, 0]), quality, np.array([0]))


def hand_batch(cand=(10, 20, 30, -1)) -> RequestBatch:
    cand = torch.tensor([cand])
    n = cand.shape[1]
    return RequestBatch(
        request_id=torch.tensor([0]), user_id=torch.tensor([7]), candidate_set_id=torch.tensor([0]),
        loc=torch.tensor([[0.5, 0.5]]), user_feats=torch.tensor([[0, 0, 0, 12, 0]]),
        bhv_feats=torch.zeros(1, 1, 5, dtype=torch.int64), bhv_mask=torch.zeros(1, 1, dtype=torch.bool),
        cand_ids=cand, cand_rows=cand.clamp_min(0), cand_mask=cand >= 0, bids=torch.zeros(1, n),
        labels=torch.zeros(1, n), label_mask=torch.zeros(1, n, dtype=torch.bool),
        exposed_slot=torch.full((1, n), -1), exposed_index=torch.zeros(1, 3, dtype=torch.int64),
        exposed_clicks=torch.zeros(1, 3),
    )


def test_outcome_arithmetic_on_a_hand_made_case(hand_oracle):
    winners = torch.tensor([[10, 20, -1]])
    prices = torch.tensor([[1.5, 0.5, 9.0]])  # the price of an empty slot is ignored
    out = hand_oracle.outcome(hand_batch(), winners, prices)
    c0, c1 = sig(-2.0 + 0.5), 0.75 * sig(-2.0)  # ad 20 is orthogonal to ad 10: no externality
    torch.testing.assert_close(out.ctr, torch.tensor([[c0, c1, 0.0]]))
    torch.testing.assert_close(out.values, torch.tensor([[2.0, 1.0, 0.0]]))
    torch.testing.assert_close(out.prices, torch.tensor([[1.5, 0.5, 0.0]]))
    torch.testing.assert_close(out.expected_clicks, torch.tensor([c0 + c1]))
    torch.testing.assert_close(out.revenue, torch.tensor([1.5 * c0 + 0.5 * c1]))
    torch.testing.assert_close(out.utility, torch.tensor([[0.5 * c0, 0.5 * c1, 0.0]]))
    torch.testing.assert_close(out.welfare, torch.tensor([2.0 * c0 + 1.0 * c1]))
    torch.testing.assert_close(out.welfare - out.revenue, out.utility.sum(-1))


def test_externality_crowding_and_creatives_by_hand(hand_oracle):
    ext = 0.5 * 0.8  # ad 10 above ad 30, cos .8
    crowd = 0.3 * math.log(2.0)  # ad 10 is a strong ad of the same category in the set
    ctr = hand_oracle.slot_ctr(hand_batch(), torch.tensor([[10, 30, 20]]))
    expect_30 = 0.75 * 0.5 * (sig(-2.0 - ext - crowd) + sig(-2.0 - ext - crowd + 1.0))  # mean over 2 creatives
    expect_20 = 0.6 * sig(-2.0)  # cos(e1, ·) = 0 with both above
    torch.testing.assert_close(ctr, torch.tensor([[sig(-1.5), expect_30, expect_20]]))
    shown = hand_oracle.slot_ctr(hand_batch(), torch.tensor([[10, 30, 20]]), torch.tensor([[0, 1, 0]]))
    assert float(shown[0, 1]) == pytest.approx(0.75 * sig(-2.0 - ext - crowd + 1.0), rel=1e-6)
    swapped = hand_oracle.slot_ctr(hand_batch(), torch.tensor([[30, 10, -1]]))  # now ad 10 is hurt
    assert float(swapped[0, 1]) == pytest.approx(0.75 * sig(-1.5 - ext), rel=1e-6)


def test_pointwise_ctr_and_values(hand_oracle):
    p = hand_oracle.pointwise_ctr(hand_batch())
    crowd = 0.3 * math.log(2.0)
    expect = [sig(-1.5), sig(-2.0), 0.5 * (sig(-2.0 - crowd) + sig(-1.0 - crowd)), 0.0]
    torch.testing.assert_close(p, torch.tensor([expect]))
    torch.testing.assert_close(hand_oracle.values(torch.tensor([[30, -1], [10, 20]])), torch.tensor([[3.0, 0.0], [2.0, 1.0]]))


def test_bad_ids_are_clear_errors(hand_oracle):
    with pytest.raises(WorldDataError, match=r"field 'winners_ids' row 0: unknown ad id 99"):
        hand_oracle.slot_ctr(hand_batch(), torch.tensor([[10, 99, -1]]))
    with pytest.raises(WorldDataError, match=r"field 'ad_ids' row 0: unknown ad id 42"):
        hand_oracle.pointwise_ctr(hand_batch((10, 42, -1, -1)))
    with pytest.raises(WorldDataError, match=r"field 'creatives' row 0: creative 1 out of range"):
        hand_oracle.slot_ctr(hand_batch(), torch.tensor([[10, 20, 30]]), torch.tensor([[1, 0, 0]]))
    with pytest.raises(WorldDataError, match=r"field 'winners_ids' row 0: ad id 20 appears twice"):
        hand_oracle.slot_ctr(hand_batch(), torch.tensor([[20, -1, 20]]))
    bad_user = hand_batch().replace(user_id=torch.tensor([8]))
    with pytest.raises(WorldDataError, match=r"field 'user_id' row 0: unknown user id 8"):
        hand_oracle.pointwise_ctr(bad_user)
    bad_set = hand_batch().replace(candidate_set_id=torch.tensor([3]))
    with pytest.raises(WorldDataError, match=r"candidate_set_id"):
        hand_oracle.pointwise_ctr(bad_set)


def test_ad_outside_the_candidate_set_is_refused(tiny_world, tiny_oracle):
    o = tiny_oracle
    t = read_requests(tiny_world, "test").slice(0, 1)
    ctx = o.context_from_requests(t)
    inside = o.candidate_set_ids(int(ctx.set_ids[0]))
    outside = o.ad_ids[~torch.isin(o.ad_ids, inside)][:1]
    assert len(outside) == 1
    with pytest.raises(WorldDataError, match="not in the request's candidate set"):
        o.list_ctr(ctx, torch.stack([inside[0], outside[0]]).unsqueeze(0))


def test_batch_api_on_the_tiny_world(tiny_world, tiny_oracle, make_batch):
    t = read_requests(tiny_world, "test").slice(0, 6)
    batch = make_batch(tiny_world, tiny_oracle, t)
    p = tiny_oracle.pointwise_ctr(batch)
    assert p.shape == batch.cand_ids.shape
    assert torch.all(p[~batch.cand_mask] == 0) and torch.all((p[batch.cand_mask] > 0) & (p[batch.cand_mask] < 1))
    winners = batch.cand_ids.gather(1, batch.exposed_index)
    ctr = tiny_oracle.slot_ctr(batch, winners)
    assert ctr.shape == (6, 5)
    pw = p.gather(1, batch.exposed_index)
    assert torch.all(ctr <= pw + 1e-7)  # position bias ≤ 1 and externality ≥ 0 only lower CTR
    prices = torch.from_numpy(np.asarray(t.column("exposed_prices").combine_chunks().flatten()).reshape(6, 5).copy())
    out = tiny_oracle.outcome(batch, winners, prices)
    torch.testing.assert_close(out.revenue, (prices * ctr).sum(-1))
    assert torch.all(out.utility >= 0)  # GSP prices ≤ bid = value: truthful bidders never lose
    # padding does not change anything: append padded candidates
    wide = batch.replace(
        cand_ids=torch.cat([batch.cand_ids, torch.full((6, 7), -1)], 1),
        cand_mask=torch.cat([batch.cand_mask, torch.zeros(6, 7, dtype=torch.bool)], 1),
    )
    torch.testing.assert_close(tiny_oracle.pointwise_ctr(wide)[:, : p.shape[1]], p)


def test_world_stats_reports_each_effect_with_its_sign(tiny_world, tiny_oracle):
    s = world_stats(tiny_world, n_requests=64, oracle=tiny_oracle)
    assert sum(s["requests_per_split"].values()) == s["sizes"]["requests"]
    assert 0.01 <= s["logged"]["ctr_per_exposure"] <= 0.10
    e = s["effects"]
    pb = e["position_bias"]["truth"]
    assert all(a > b for a, b in zip(pb, pb[1:]))
    assert e["list_externality"]["similar_above_vs_dissimilar_above_rel_ctr"] < -0.05
    assert e["crowding"]["most_crowded_tenth_rel_ctr"] < -0.05
    assert e["crowding"]["least_crowded_tenth_rel_ctr"] > e["crowding"]["most_crowded_tenth_rel_ctr"]
    # the set-dependent part of crowding is part of its spread, and a share of the logit's
    assert 0.0 < e["crowding"]["set_dependent_std"] <= e["crowding"]["std"]
    assert 0.0 < e["crowding"]["set_dependent_share_of_logit_var"] < 1.0
    assert e["hour_x_category"]["best_vs_worst_hour_rel_ctr"] > 0.05
    assert e["distance"]["near_vs_radius_rel_ctr"] > 0.05
    assert e["creative"]["best_vs_worst_creative_rel_ctr"] > 0.05
    assert e["interest"]["top_vs_bottom_tenth_rel_ctr"] > 0.05


def test_within_group_std_is_the_spread_the_group_leaves():
    from egakit.sim.stats import _within_group_std

    x = torch.tensor([1.0, 3.0, 5.0, 5.0, 10.0], dtype=torch.float64)
    group = torch.tensor([7, 7, 2, 2, 9])
    # group 7: ±1 around 2; group 2: 0; group 9: one value, 0 -> sqrt((1 + 1) / 5)
    assert _within_group_std(x, group) == pytest.approx((2.0 / 5.0) ** 0.5)
    assert _within_group_std(x, torch.arange(5)) == 0.0


def test_pointwise_ceiling_on_the_tiny_world(tiny_world):
    """The headroom study runs on a world with supply states and reports AUCs in range."""
    from studies.pointwise_ceiling import ceilings

    out = ceilings(tiny_world, n_requests=20, draws=2)
    assert out["requests"] == 20 and out["candidates"] > 20 * 6
    assert 0.5 < out["truth_oracle_auc"] <= 1.0 and 0.0 < out["best_pointwise_oracle_auc"] <= 1.0
    assert out["gap"] == pytest.approx(out["truth_oracle_auc"] - out["best_pointwise_oracle_auc"])
