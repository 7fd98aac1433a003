"""The cascade mechanism: K distinct valid winners, IR prices, the funnel's stage sizes, and
regret through egakit.auction.regret with the contender shortcut missing no deviation."""
import pytest
import torch

from egakit.auction import regret
from egakit.baselines import CascadeContext, CascadeMechanism

B, N, K = 6, 30, 3


def random_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, N, generator=g) < 0.8
    mask[:, :8] = True  # every request has enough candidates
    ctx = CascadeContext(
        recall_score=torch.randn(B, N, generator=g),
        prerank_ctr=torch.rand(B, N, generator=g) * 0.2,
        rank_ctr=torch.rand(B, N, generator=g) * 0.2,
        mask=mask,
    )
    bids = torch.where(mask, torch.rand(B, N, generator=g) * 3 + 0.1, torch.zeros(B, N))
    return ctx, bids


@pytest.mark.parametrize("prerank_score", ["ecpm", "ctr"])
def test_winners_are_k_distinct_valid_ads_from_the_funnel_with_ir_prices(prerank_score):
    ctx, bids = random_case()
    mech = CascadeMechanism(recall_size=12, prerank_size=6, K=K, prerank_score=prerank_score)
    winners, prices = mech.allocate(bids, ctx)
    assert winners.shape == (B, K) and prices.shape == (B, K)
    recalled = mech.recalled(ctx)
    kept = mech.kept(bids, ctx)
    assert bool((kept.sum(1) == 6).all()) and bool((recalled.sum(1) == 12).all())
    assert bool((kept <= recalled).all()) and bool((recalled <= ctx.mask).all())
    for b in range(B):
        w = winners[b].tolist()
        assert len(set(w)) == K
        assert all(kept[b, i] for i in w)
    own_bids = bids.gather(1, winners)
    assert bool((prices >= 0).all()) and bool((prices <= own_bids + 1e-6).all())
    # GSP on the rank stage: slot order by pCTR · bid among the kept ads
    score = (ctx.rank_ctr * bids).gather(1, winners)
    assert bool((score[:, :-1] >= score[:, 1:]).all())


def test_recall_is_bid_free_and_prerank_by_ctr_too():
    ctx, bids = random_case(1)
    mech = CascadeMechanism(12, 6, K, "ctr")
    assert torch.equal(mech.recalled(ctx), CascadeMechanism(12, 6, K).recalled(ctx))
    assert torch.equal(mech.kept(bids, ctx), mech.kept(bids * 7.0, ctx))


def test_short_requests_keep_every_candidate():
    ctx, bids = random_case(2)
    ctx.mask[0] = False
    ctx.mask[0, :K] = True
    bids[0] = torch.where(ctx.mask[0], bids[0].clamp_min(0.1), torch.zeros(N))
    winners, _ = CascadeMechanism(12, 6, K).allocate(bids, ctx)
    assert sorted(winners[0].tolist()) == list(range(K))


def test_stage_ranking_puts_the_recalled_set_first_in_prerank_order():
    ctx, _ = random_case(3)
    mech = CascadeMechanism(12, 6, K)
    keys = mech.stage_ranking(ctx)
    recalled = mech.recalled(ctx)
    for b in range(B):
        order = torch.argsort(keys[b], descending=True)[: int(ctx.mask[b].sum())]
        n_rec = int(recalled[b].sum())
        assert bool(recalled[b, order[:n_rec]].all())
        pctr = ctx.prerank_ctr[b, order[:n_rec]]
        assert bool((pctr[:-1] >= pctr[1:]).all())
    assert bool(torch.isinf(keys[~ctx.mask]).all())


@pytest.mark.parametrize("prerank_score", ["ecpm", "ctr"])
def test_regret_with_contenders_equals_regret_over_every_ad(prerank_score):
    ctx, bids = random_case(4)
    mech = CascadeMechanism(12, 6, K, prerank_score)
    theta = torch.tensor([1.0, 0.7, 0.5])

    def ctr_fn(winners, c):
        return torch.where(winners >= 0, c.rank_ctr.gather(1, winners.clamp_min(0)) * theta, torch.zeros(()))

    winners, _ = mech.allocate(bids, ctx)
    contenders = mech.contenders(bids, ctx, 2.0, winners)
    everyone = regret(mech, bids, ctr_fn, ctx, valid=ctx.mask, advertisers="all")
    shortcut = regret(mech, bids, ctr_fn, ctx, valid=ctx.mask, advertisers=contenders)
    assert contenders.sum() < ctx.mask.sum()  # the shortcut does save work
    assert shortcut.regret_sum == pytest.approx(everyone.regret_sum, rel=1e-5)
    assert shortcut.utility_sum == pytest.approx(everyone.utility_sum, rel=1e-5)
    assert everyone.regret_sum > 0  # GSP behind a cascade is not truthful
    assert torch.equal(everyone.regret > 0, (everyone.regret > 0) & contenders)


@pytest.mark.parametrize("sizes", [(5, 6, 3), (12, 6, 7), (12, 6, 0)])
def test_bad_stage_sizes_are_refused(sizes):
    with pytest.raises(ValueError, match="stage sizes"):
        CascadeMechanism(*sizes)


def test_unknown_prerank_score_is_refused():
    with pytest.raises(ValueError, match="prerank_score"):
        CascadeMechanism(12, 6, 3, "cpm")
