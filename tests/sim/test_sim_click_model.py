"""The ground-truth click model (docs/design.md §1): every effect moves the true CTR the stated way, crowding
is O(N log N) and set-dependent, and the logs agree with the truth."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from egakit.sim import load_world_meta, read_requests
from egakit.sim.click_model import crowding, posbias
from egakit.sim.schema import SPLITS


def _test_requests(world, n=64):
    return read_requests(world, "test").slice(0, n)


def _exposed(t, K=5):
    return torch.from_numpy(np.asarray(t.column("exposed_ids").combine_chunks().flatten()).reshape(-1, K).copy())


def test_position_bias_decreases():
    pb = posbias(1.0 / 3.0, 5)
    assert torch.allclose(pb, torch.tensor([1.0, 0.75, 0.6, 0.5, 3.0 / 7.0]))
    assert torch.all(pb[1:] < pb[:-1])


def _brute_crowding(category, quality, strong, i):
    """log1p(#other same-category candidates of quality ≥ strong), one candidate at a time."""
    others = np.arange(category.size) != i
    return np.log1p(np.sum(others & (category == category[i]) & (quality >= strong)))


def test_crowding_counts_strong_same_category_rivals():
    rng = np.random.default_rng(0)
    category = rng.integers(0, 4, size=300)
    quality = np.round(rng.normal(size=300), 1)  # ties at the threshold count as strong
    brute = np.array([_brute_crowding(category, quality, 0.3, i) for i in range(300)])
    np.testing.assert_allclose(crowding(category, quality, 0.3), brute, rtol=1e-6)
    assert crowding(np.zeros(0, int), np.zeros(0), 0.3).shape == (0,)
    # an ad is never its own rival: one strong ad alone in its category is not crowded
    assert crowding(np.array([0, 1]), np.array([1.0, 1.0]), 0.3).tolist() == [0.0, 0.0]
    # removing strong rivals lowers crowding; removing weak ones changes nothing
    full = crowding(np.zeros(4, int), np.array([0.0, 1.0, 1.0, -1.0]), 0.3)
    assert crowding(np.zeros(3, int), np.array([0.0, 1.0, -1.0]), 0.3)[0] < full[0]
    assert crowding(np.zeros(3, int), np.array([0.0, 1.0, 1.0]), 0.3)[0] == full[0]


def test_crowding_scales_to_1e5_candidates():
    rng = np.random.default_rng(1)
    n = 100_000
    category, quality = rng.integers(0, 32, size=n), rng.normal(size=n).astype(np.float32)
    start = time.perf_counter()
    c = crowding(category, quality, 0.3)
    assert time.perf_counter() - start < 2.0  # one bincount; all-pairs would be 10^10
    for i in rng.choice(n, size=20, replace=False):
        assert c[i] == pytest.approx(_brute_crowding(category, quality, np.float32(0.3), i), rel=1e-6)


def test_similar_ad_above_lowers_ctr(tiny_world, tiny_oracle):
    o = tiny_oracle
    t = _test_requests(tiny_world)
    ctx = o.context_from_requests(t)
    ex = _exposed(t)
    j = ex[:, 1]
    unit = o.tables.latent / o.tables.latent.norm(dim=-1, keepdim=True)
    checked = 0
    for b in range(len(ctx)):
        cand = o.candidate_set_ids(int(ctx.set_ids[b]))
        cand = cand[cand != j[b]]
        rows, _ = o.ad_rows(cand)
        cos = unit[rows] @ unit[o.ad_rows(j[b : b + 1])[0][0]]
        sim, dis = cand[cos.argmax()], cand[cos.argmin()]
        assert cos.max() > 0 >= cos.min()
        c = ctx.select(torch.tensor([b, b]))
        ctr = o.list_ctr(c, torch.stack([torch.stack([sim, j[b]]), torch.stack([dis, j[b]])]))[:, 1]
        assert ctr[0] < ctr[1]
        checked += 1
    assert checked == len(ctx)


def test_top_slot_ctr_equals_slot_free_ctr(tiny_world, tiny_oracle):
    """Slot 0 has posbias 1 and nothing above it: the list CTR there is the slot-free CTR; empty
    slots have CTR 0 and exert no externality."""
    t = _test_requests(tiny_world)
    ctx = tiny_oracle.context_from_requests(t)
    ex = _exposed(t)
    top = tiny_oracle.list_ctr(ctx, ex)[:, 0]
    torch.testing.assert_close(top, tiny_oracle.slot_free_ctr(ctx, ex[:, :1])[:, 0])
    gaps = ex.clone()
    gaps[:, 0] = -1
    with_gap = tiny_oracle.list_ctr(ctx, gaps)
    assert torch.all(with_gap[:, 0] == 0)
    pb = posbias(tiny_oracle.truth.params.posbias_decay, 5)
    alone = tiny_oracle.list_ctr(ctx, torch.stack([ex[:, 1]] + [torch.full_like(ex[:, 0], -1)] * 4, 1))
    torch.testing.assert_close(alone[:, 0], tiny_oracle.slot_free_ctr(ctx, ex[:, 1:2])[:, 0])
    # the second ad one slot lower with nothing above: only the position bias differs
    lower = tiny_oracle.list_ctr(ctx, torch.stack([torch.full_like(ex[:, 0], -1), ex[:, 1]], 1))
    torch.testing.assert_close(lower[:, 1], alone[:, 0] * pb[1])


def test_more_crowding_lowers_ctr_and_depends_on_the_set(tiny_world, tiny_oracle):
    """The same ad for the same user, hour and place has a different truth in different candidate
    sets: only the set-level crowding changes (a point-wise model cannot see this)."""
    o = tiny_oracle
    n_sets = len(o.set_cells)
    found = 0
    for a in range(n_sets):
        rows_a, crowd_a = o.candidate_set(a)
        for b in range(a + 1, n_sets):
            rows_b, crowd_b = o.candidate_set(b)
            common, ia, ib = np.intersect1d(rows_a.numpy(), rows_b.numpy(), return_indices=True)
            differs = crowd_a[ia] != crowd_b[ib]
            if not differs.any():
                continue
            k = int(np.flatnonzero(differs.numpy())[0])
            ad = o.ad_ids[common[k]].reshape(1, 1).expand(2, 1)
            ctx = o.context(o.user_ids[:1].expand(2), torch.tensor([12, 12]), o.tables.xy[common[k]].expand(2, 2),
                            torch.tensor([a, b]))
            ctr = o.slot_free_ctr(ctx, ad)[:, 0]
            more_crowded_a = bool(crowd_a[ia[k]] > crowd_b[ib[k]])
            assert (ctr[0] < ctr[1]) == more_crowded_a
            found += 1
            break
        if found >= 5:
            break
    assert found >= 5
    # the term itself: −λ_set per unit of crowding
    p = o.truth.params
    t0 = o.tables.slot_free_logit(torch.tensor([0]), torch.tensor([9]), torch.zeros(1, 2), torch.tensor([[3]]),
                                  torch.tensor([[0.0]]))
    t1 = o.tables.slot_free_logit(torch.tensor([0]), torch.tensor([9]), torch.zeros(1, 2), torch.tensor([[3]]),
                                  torch.tensor([[2.0]]))
    assert float(t0 - t1) == pytest.approx(2.0 * p.lambda_set, rel=1e-5)


def test_hour_category_cross_has_the_right_sign(tiny_world, tiny_oracle):
    o = tiny_oracle
    t = _test_requests(tiny_world, 16)
    ctx = o.context_from_requests(t)
    cand = o.candidate_set_ids(int(ctx.set_ids[0]))[:40]
    rows, _ = o.ad_rows(cand)
    cross = o.tables.cross[:, o.tables.category[rows]]  # (24, n)
    best, worst = cross.argmax(0), cross.argmin(0)
    for i in range(len(cand)):
        c = o.context(ctx.user_rows.new_tensor([o.user_ids[ctx.user_rows[0]]] * 2), torch.stack([best[i], worst[i]]),
                      ctx.loc[:1].expand(2, 2), ctx.set_ids[:1].expand(2))
        ctr = o.slot_free_ctr(c, cand[i].reshape(1, 1).expand(2, 1))[:, 0]
        assert ctr[0] > ctr[1]


def test_distance_lowers_ctr(tiny_world, tiny_oracle):
    o = tiny_oracle
    t = _test_requests(tiny_world, 8)
    ctx = o.context_from_requests(t)
    ex = _exposed(t)
    rows, _ = o.ad_rows(ex[:, 0])
    at_ad = o.tables.xy[rows]
    step = torch.tensor([o.truth.radius / 2, 0.0])
    near = o.context(o.user_ids[ctx.user_rows], ctx.hour, at_ad, ctx.set_ids)
    far = o.context(o.user_ids[ctx.user_rows], ctx.hour, at_ad + step, ctx.set_ids)
    assert torch.all(o.slot_free_ctr(near, ex[:, :1]) > o.slot_free_ctr(far, ex[:, :1]))


def test_creative_attractiveness_raises_ctr(tiny_world, tiny_oracle):
    o = tiny_oracle
    t = _test_requests(tiny_world)
    ctx = o.context_from_requests(t)
    ex = _exposed(t)
    rows, _ = o.ad_rows(ex)
    attr, cnt = o.tables.creative_attr[rows], o.tables.creative_count[rows]
    valid = torch.arange(attr.shape[-1]) < cnt.unsqueeze(-1)
    best = attr.masked_fill(~valid, -1e9).argmax(-1)
    worst = attr.masked_fill(~valid, 1e9).argmin(-1)
    multi = cnt >= 2
    assert multi.any()
    hi, lo = o.list_ctr(ctx, ex, best), o.list_ctr(ctx, ex, worst)
    assert torch.all(hi[multi] > lo[multi]) and torch.all(hi[~multi] == lo[~multi])
    mean = o.list_ctr(ctx, ex)  # expectation over a random creative lies between
    assert torch.all(mean <= hi + 1e-7) and torch.all(mean >= lo - 1e-7)


def test_interest_raises_ctr(tiny_world, tiny_oracle):
    o = tiny_oracle
    t = _test_requests(tiny_world, 4)
    ctx = o.context_from_requests(t)
    cand = o.candidate_set_ids(int(ctx.set_ids[0])).unsqueeze(0)
    terms = o.terms(ctx.select(torch.tensor([0])), cand)
    ctr = o.slot_free_ctr(ctx.select(torch.tensor([0])), cand)[0]
    rest = (terms["quality"] + terms["cross"] + terms["distance"] + terms["crowding"])[0]
    # among ads with similar other terms, more interest means more clicks
    order = torch.argsort(terms["interest"][0])
    lo, hi = order[: len(order) // 4], order[-len(order) // 4 :]
    assert ctr[hi].mean() > ctr[lo].mean() and abs(float(rest[hi].mean() - rest[lo].mean())) < 1.0


def test_logged_clicks_and_platform_labels_agree_with_the_oracle(tiny_world, tiny_oracle):
    """Clicks in the logs are draws from the truth: their sums match the oracle's expectation
    within 4 standard deviations (exposures: list CTR with the shown creative; platform labels:
    slot-free CTR × observation rate)."""
    o = tiny_oracle
    rate = load_world_meta(tiny_world)["logging_policy"]["observation_rate"]
    expected = observed = var = 0.0
    plat_expected = plat_observed = plat_var = 0.0
    for split in SPLITS:
        t = read_requests(tiny_world, split)
        ctx = o.context_from_requests(t)
        shown = np.asarray(t.column("exposed_creatives").combine_chunks().flatten()).reshape(-1, 5)
        p = o.list_ctr(ctx, _exposed(t), torch.from_numpy(shown.astype(np.int64))).double()
        expected += float(p.sum())
        var += float((p * (1 - p)).sum())
        observed += float(np.asarray(t.column("clicks").combine_chunks().flatten()).sum())
        plat = t.column("platform_ids").to_pylist()
        ids = torch.full((len(plat), max(len(x) for x in plat)), -1, dtype=torch.int64)
        for b, x in enumerate(plat):
            ids[b, : len(x)] = torch.tensor(x)
        q = o.slot_free_ctr(ctx, ids).double() * rate
        plat_expected += float(q.sum())
        plat_var += float((q * (1 - q)).sum())
        plat_observed += float(np.asarray(t.column("platform_clicks").combine_chunks().flatten()).sum())
    assert abs(observed - expected) < 4.0 * np.sqrt(var)
    assert abs(plat_observed - plat_expected) < 4.0 * np.sqrt(plat_var)
