"""FS-LTR relabelling and the stage-local (MCA) targets on a hand-made request, and the losses."""
import math

import pytest
import torch

from egakit.baselines import (
    FullStageLabels,
    FunnelOutcome,
    downstream_selection,
    full_stage_targets,
    sampled_softmax,
    stage_local_targets,
    weighted_bce,
)

# One request, six candidates:
#   0 exposed + clicked, 1 exposed no click, 2 platform click (unexposed), 3 platform no click,
#   4 popularity-sampled (no label), 5 padding.
CAND_MASK = torch.tensor([[True, True, True, True, True, False]])
EXPOSED_SLOT = torch.tensor([[0, 1, -1, -1, -1, -1]])
LABELS = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
LABEL_MASK = torch.tensor([[True, True, True, True, False, False]])


def outcome(selected=None):
    return FunnelOutcome.from_logs(CAND_MASK, LABELS, LABEL_MASK, EXPOSED_SLOT, selected)


def test_funnel_outcome_reads_the_logs():
    o = outcome()
    assert o.exposed.tolist() == [[True, True, False, False, False, False]]
    assert o.clicked.tolist() == [[True, False, True, False, False, False]]
    assert o.labelled.tolist() == [[True, True, True, True, False, False]]
    assert o.passed.tolist() == o.exposed.tolist()


def test_mca_stages_learn_from_their_own_logs():
    targets, samples = stage_local_targets("recall", outcome())
    assert targets.tolist() == [[1, 0, 0, 0, 0, 0]]  # the platform click is *not* a positive
    assert samples.tolist() == [[True, True, True, True, True, False]]
    for stage in ("prerank", "rank"):
        targets, samples = stage_local_targets(stage, outcome())
        assert targets.tolist() == [[1, 0, 0, 0, 0, 0]]
        assert samples.tolist() == [[True, True, False, False, False, False]]  # exposure only


def test_fs_ltr_relabels_every_stage_with_full_stage_outcomes():
    for stage in ("recall", "prerank"):
        targets, samples = full_stage_targets(stage, outcome())
        # clicked anywhere → 1; passed the later stages (exposed) → pass target 1; else 0
        assert targets.tolist() == [[1, 1, 1, 0, 0, 0]]
        assert samples.tolist() == [[True, True, True, True, True, False]]
    graded = FullStageLabels(pass_target=0.5)
    targets, _ = full_stage_targets("prerank", outcome(), graded)
    assert targets.tolist() == [[1, 0.5, 1, 0, 0, 0]]
    # the rank stage keeps calibrated click labels, on every labelled candidate (platform too)
    targets, samples = full_stage_targets("rank", outcome())
    assert targets.tolist() == [[1, 0, 1, 0, 0, 0]]
    assert samples.tolist() == [[True, True, True, True, False, False]]


def test_downstream_selection_counts_as_passed():
    selected = torch.tensor([[False, False, False, False, True, True]])  # 5 is padding: ignored
    targets, _ = full_stage_targets("prerank", outcome(selected), FullStageLabels(pass_target=0.5))
    assert targets.tolist() == [[1, 0.5, 1, 0, 0.5, 0]]


def test_downstream_selection_is_the_top_by_ctr_times_bid():
    ctr = torch.tensor([[0.1, 0.5, 0.2, 0.2, 0.9]])
    bids = torch.tensor([[1.0, 1.0, 2.0, 2.0, 5.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    chosen = downstream_selection(ctr, bids, mask, 2)
    assert chosen.tolist() == [[False, True, True, False, False]]  # 0.5 and the first 0.4 (tie → lower index)
    assert downstream_selection(ctr, None, mask, 1).tolist() == [[False, True, False, False, False]]


@pytest.mark.parametrize(
    "kwargs", [dict(click_target=1.5), dict(pass_target=-0.1), dict(pass_target=0.3, negative_target=0.5)]
)
def test_bad_label_schemes_are_refused(kwargs):
    with pytest.raises(ValueError):
        FullStageLabels(**kwargs)


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage must be one of"):
        full_stage_targets("auction", outcome())


def test_sampled_softmax_matches_the_formula_and_skips_requests_without_positives():
    scores = torch.tensor([[2.0, 0.0, 1.0, 5.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    samples = torch.tensor([[True, True, True, False], [True, True, True, True]])
    loss = sampled_softmax(scores, targets, samples)
    log_z = math.log(math.exp(2) + math.exp(0) + math.exp(1))  # candidate 3 is not a sample
    expected = -((2 - log_z) + (1 - log_z)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert scores.grad[0, 3] == 0 and bool((scores.grad[1] == 0).all())


def test_losses_are_zero_but_attached_when_there_is_nothing_to_learn():
    scores = torch.randn(2, 3, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.bool)
    for loss in (sampled_softmax(scores, torch.zeros(2, 3), none), weighted_bce(scores, torch.zeros(2, 3), none)):
        assert loss.item() == 0.0 and loss.requires_grad
