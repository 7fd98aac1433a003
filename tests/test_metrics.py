"""torchmetrics metrics: hand-computed values, and two shards merged = one pass (DDP-style)."""
import math

import pytest
import torch

from egakit.auction import PositionContext, regret, separable_ctr
from egakit.metrics import AUC, Deviation, ExpectedCTR, ExpectedRPM, PsiMetric, RecallAtK

F64 = torch.float64


def test_recall_at_k_hand():
    preds = torch.tensor([[0.9, 0.1, 0.8, 0.3], [0.2, 0.4, 0.6, 0.1], [0.5, 0.4, 0.3, 0.2]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    m = RecallAtK(k=2)
    # row 0: top-2 = {0, 2}, relevant {0, 1} → 1/2; row 1: top-2 = {2, 1}, relevant {3} → 0;
    # row 2: no relevant ad → not counted. Mean = 0.25.
    m.update(preds, target)
    assert m.compute().item() == pytest.approx(0.25)


def test_recall_at_k_respects_mask_and_ties():
    preds = torch.tensor([[0.9, 0.1, 0.8, 0.3]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]])
    m = RecallAtK(k=2)
    m.update(preds, target, mask)  # only candidates 0 and 1 are real: both in the top 2
    assert m.compute().item() == 1.0
    tied = RecallAtK(k=1)
    tied.update(torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 1.0]]))  # tie → candidate 0 ranks first
    assert tied.compute().item() == 0.0


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_recall_k_larger_than_n_and_empty():
    m = RecallAtK()
    assert m.compute().item() == 0.0
    m.update(torch.rand(2, 5), torch.tensor([[1.0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]))
    assert m.compute().item() == 1.0


def test_auc_hand():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 3 of 4 → 0.75. Masked entries ignored.
    preds = torch.tensor([[0.1, 0.4, 0.35, 0.8, 0.99]])
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    m = AUC()
    m.update(preds, target, mask)
    assert m.compute().item() == pytest.approx(0.75)
    tie = AUC()
    tie.update(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]))
    assert tie.compute().item() == pytest.approx(0.5)


def test_auc_binned_close_to_exact():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2000, generator=g) < 0.3).float()
    preds = (torch.rand(2000, generator=g) + 0.5 * target).clamp(0, 1)
    exact, binned = AUC(), AUC(thresholds=1000)
    exact.update(preds, target)
    binned.update(preds, target)
    assert binned.compute().item() == pytest.approx(exact.compute().item(), abs=2e-3)


def test_ectr_and_erpm_hand():
    q = torch.tensor([[0.1, 0.05], [0.2, 0.0]])
    p = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    ctr = ExpectedCTR()
    ctr.update(q)
    # per request Σq: 0.15, 0.20 → mean 0.175 → 17.5 %
    assert ctr.compute().item() == pytest.approx(17.5)
    rpm = ExpectedRPM()
    rpm.update(q, p)
    # per request Σq·p: 0.2 + 0.05 = 0.25, 0.1 + 0 = 0.1 → mean 0.175 → ×1000 = 175
    assert rpm.compute().item() == pytest.approx(175.0)
    masked = ExpectedCTR()
    masked.update(q, torch.tensor([[True, False], [True, True]]))
    assert masked.compute().item() == pytest.approx((0.1 + 0.2) / 2 * 100)


def test_psi_metric_hand_and_zero_denominator():
    m = PsiMetric()
    m.update(torch.tensor([0.08, 0.0, 5.0]), torch.tensor([0.10, 0.09, 1.0]), torch.tensor([True, True, False]))
    assert m.compute().item() == pytest.approx(0.08 / 0.19)
    zero = PsiMetric()
    zero.update(torch.zeros(3), torch.zeros(3))
    assert zero.compute().item() == 0.0
    inf = PsiMetric()
    inf.update(torch.tensor([0.1]), torch.tensor([0.0]))
    assert math.isinf(inf.compute().item())


def test_psi_metric_from_regret_result():
    values = torch.tensor([[3.0, 5.0, 1.0, 2.0]], dtype=F64)
    ctx = PositionContext(torch.tensor([[0.10, 0.10, 0.25, 0.20]], dtype=F64), torch.tensor([1.0, 0.9], dtype=F64),
                          torch.ones(1, 4, dtype=torch.bool), 2)
    r = regret("gsp", values, separable_ctr, ctx, gammas=(0.7,), advertisers="winners")
    m = PsiMetric()
    m.update(r)
    assert m.compute().item() == pytest.approx(r.psi)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_deviation_hand():
    m = Deviation()
    m.update(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.0, 1.0, 0.0]))
    assert m.compute().item() == pytest.approx(0.4)  # |1 − 0.6 / 1|
    empty = Deviation()
    assert empty.compute().item() == 0.0
    none_clicked = Deviation()
    none_clicked.update(torch.tensor([0.1]), torch.tensor([0.0]))
    assert math.isinf(none_clicked.compute().item())


def _data(seed=0, B=12, N=20, K=3):
    g = torch.Generator().manual_seed(seed)
    return dict(
        preds=torch.rand(B, N, generator=g),
        target=(torch.rand(B, N, generator=g) < 0.2).float(),
        mask=torch.rand(B, N, generator=g) < 0.9,
        q=torch.rand(B, K, generator=g) * 0.1,
        p=torch.rand(B, K, generator=g),
        slot_mask=torch.rand(B, K, generator=g) < 0.9,
        regret=torch.rand(B, N, generator=g) * 0.01,
        utility=torch.rand(B, N, generator=g),
    )


UPDATES = {
    RecallAtK: lambda m, d: m.update(d["preds"], d["target"], d["mask"]),
    AUC: lambda m, d: m.update(d["preds"], d["target"], d["mask"]),
    ExpectedCTR: lambda m, d: m.update(d["q"], d["slot_mask"]),
    ExpectedRPM: lambda m, d: m.update(d["q"], d["p"], d["slot_mask"]),
    PsiMetric: lambda m, d: m.update(d["regret"], d["utility"], d["mask"]),
    Deviation: lambda m, d: m.update(d["preds"], d["target"], d["mask"]),
}


@pytest.mark.parametrize("cls", list(UPDATES), ids=lambda c: c.__name__)
def test_two_shards_merged_equal_one_pass(cls):
    data = _data()
    half = {k: (v[:6], v[6:]) for k, v in data.items()}
    one, a, b = cls(), cls(), cls()
    UPDATES[cls](one, data)
    UPDATES[cls](a, {k: v[0] for k, v in half.items()})
    UPDATES[cls](b, {k: v[1] for k, v in half.items()})
    a.merge_state(b)
    torch.testing.assert_close(a.compute().double(), one.compute().double())


@pytest.mark.parametrize("cls", [c for c in UPDATES if c is not AUC], ids=lambda c: c.__name__)
def test_states_are_ddp_summed(cls):
    m = cls()
    assert m._reductions and all(fx is not None for fx in m._reductions.values())
    assert all(getattr(m, name).dtype == torch.float64 for name in m._defaults)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes must match"):
        ExpectedRPM().update(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="non-finite"):
        RecallAtK(k=1).update(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2))
