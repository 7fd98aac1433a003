"""The set-aware RecFormer learns a set-level effect that the point-wise −gcf variant cannot.

A positive control for V1 Table 2's −gcf row (docs/design.md §3.2): in each request the candidates'
categories follow a request-specific mixture, and the true click logit of a candidate falls with
the share of its own category in the set, z = 1 − 4 · share (a crowding effect that depends on
the whole set only). Given its own features a candidate's expected share is the same for every
category, so no point-wise model can rank by it; cluster attention can read the set's category
mix. Both variants get the same size, data, optimiser and steps.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from egakit.batch import RequestBatch
from egakit.model import EGAV1
from egakit.sim.schema import AD_CATEGORICAL

from conftest import VOCAB_SIZES, make_batch, small_config

CATEGORY = AD_CATEGORICAL.index("category")
N_CATEGORIES = VOCAB_SIZES["category"]
MIX_CONCENTRATION = 0.3  # Dirichlet of each request's category mix: a few categories dominate
STEPS, BATCH, CANDIDATES, LR = 300, 64, 16, 1e-2


def crowded_batch(seed: int, B: int = BATCH, N: int = CANDIDATES) -> tuple[RequestBatch, torch.Tensor]:
    """A batch of B requests with N candidates each, and the true logit z (B, N) = 1 − 4 · the
    share of the candidate's category among the request's candidates."""
    batch = make_batch(B=B, N=N, seed=seed, min_valid=N)
    g = torch.Generator().manual_seed(10_000 + seed)
    mix = torch.distributions.Dirichlet(torch.full((N_CATEGORIES,), MIX_CONCENTRATION)).sample((B,))
    categories = torch.multinomial(mix, N, replacement=True, generator=g)
    feats = batch.cand_feats.clone()
    feats[..., CATEGORY] = categories
    share = (categories.unsqueeze(-1) == categories.unsqueeze(-2)).float().mean(-1)
    return batch.replace(cand_feats=feats), 1.0 - 4.0 * share


def fitted_correlation(variant: str) -> float:
    """Train ``variant`` on the true click probabilities; the correlation of its CTR logit with
    the true logit on held-out requests."""
    torch.manual_seed(0)
    model = EGAV1(small_config(variant=variant, m=2, m_c=2), VOCAB_SIZES)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for step in range(STEPS):
        batch, z = crowded_batch(step)
        loss = F.binary_cross_entropy_with_logits(model.encode(batch).ctr_logit, torch.sigmoid(z))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    batch, z = crowded_batch(99_999)
    with torch.no_grad():
        pred = model.encode(batch).ctr_logit
    return float(torch.corrcoef(torch.stack([pred.flatten(), z.flatten()]))[0, 1])


@pytest.mark.slow
def test_set_aware_model_learns_crowding_the_point_wise_one_cannot():
    set_aware, point_wise = fitted_correlation("full"), fitted_correlation("no_gcf")
    assert set_aware > 0.5, set_aware
    assert abs(point_wise) < 0.25, point_wise
