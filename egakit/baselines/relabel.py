"""Training targets of the cascade stages: stage-local (MCA) and full-stage relabelled (FS-LTR).

**MCA** (V1 §5.1.3): every stage learns from its own logs — the ads the platform *exposed* —
the usual practice that FS-LTR corrects:

- recall: the request's exposed clicks are the positives, every other candidate of the request
  (exposed or sampled) a negative (sampled softmax);
- pre-rank and rank: the K exposed ads with their click labels (BCE).

**FS-LTR** (Full Stage Learning to Rank, Zheng et al. 2024, V1 ref. [35]). Its Generalised
Probability Ranking Principle ranks each stage's candidates by *the chance that the later stages
let the item through* times *the user's interest*, and realises it by training every stage on
samples from all stages with labels relabelled from the whole funnel: an item that later stages
passed, or that the user clicked, must not be a negative for an earlier stage just because that
stage's own logs never saw it succeed. V1 uses "the same architecture as MCA, incorporating
FS-LTR's sample re-labeling technique". With this world's logs the funnel outcomes of a candidate
are (:class:`FunnelOutcome`):

- ``clicked``  — an exposed click, or a *platform* click on an unexposed ad (V1 §4.1 "clicks from
  other entries": evidence of interest the ad stages never exposed);
- ``passed``   — it passed every later stage: exposed by the logged cascade, or ``selected`` by an
  estimate of the later stages' selection (FS-LTR's selection-bias estimate: the downstream
  model's own top choices among the request's candidates, :func:`downstream_selection`);
- otherwise it was filtered (unexposed, no click) — a negative.

Full-stage targets (:func:`full_stage_targets`), over every candidate of the training request:

=================  =================================  =========================================
stage              samples                            target
=================  =================================  =========================================
recall, pre-rank   all valid candidates               ``click_target`` if clicked, else
                   (exposed, platform-labelled,       ``pass_target`` if passed, else
                   popularity-sampled)                ``negative_target``
rank               every labelled candidate           its click label (exposed *and* platform
                   (exposed + platform labels)        labels; the rank's pCTR feeds GSP prices,
                                                      so it stays a calibrated CTR)
=================  =================================  =========================================

The rank stage's only later stage is the auction, which ranks by the rank's own pCTR·bid, so its
full-stage label is the click itself — on all-stage samples instead of the exposed ones only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from egakit.auction.position import top_ranked
from egakit.baselines.common import check_stage


@dataclass(frozen=True)
class FullStageLabels:
    """Target values of the full-stage relabelling for the stages before rank.

    click_target: a clicked candidate (exposed or platform click).
    pass_target: a candidate the later stages passed (exposed, or selected by the downstream
        estimate) without a click. 1.0 treats "would reach the user" as a positive, as FS-LTR's
        earlier stages do; lower values grade it below a click.
    negative_target: every other candidate.
    """

    click_target: float = 1.0
    pass_target: float = 1.0
    negative_target: float = 0.0

    def __post_init__(self) -> None:
        for name in ("click_target", "pass_target", "negative_target"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FullStageLabels.{name} must be in [0, 1], got {value}")
        if not self.negative_target <= self.pass_target <= self.click_target:
            raise ValueError(
                "FullStageLabels needs negative_target <= pass_target <= click_target, got "
                f"{self.negative_target}, {self.pass_target}, {self.click_target}"
            )


@dataclass(frozen=True)
class FunnelOutcome:
    """How far each candidate (B, N) went through the funnel (all bool, False on padding)."""

    valid: Tensor
    labelled: Tensor
    exposed: Tensor
    clicked: Tensor
    passed: Tensor

    @classmethod
    def from_logs(
        cls,
        cand_mask: Tensor,
        labels: Tensor,
        label_mask: Tensor,
        exposed_slot: Tensor,
        selected: Optional[Tensor] = None,
    ) -> "FunnelOutcome":
        """From a :class:`~egakit.batch.RequestBatch`'s fields; ``selected`` (B, N) bool: the
        downstream estimate's choices (None: the logged exposure only)."""
        valid = cand_mask
        labelled = label_mask & valid
        exposed = (exposed_slot >= 0) & valid
        clicked = labelled & (labels > 0)
        passed = exposed if selected is None else exposed | (selected & valid)
        return cls(valid=valid, labelled=labelled, exposed=exposed, clicked=clicked, passed=passed)


def stage_local_targets(stage: str, outcome: FunnelOutcome) -> tuple[Tensor, Tensor]:
    """MCA targets ``(targets (B, N) float, samples (B, N) bool)`` (module docstring)."""
    check_stage(stage)
    clicked_exposed = (outcome.clicked & outcome.exposed).float()
    if stage == "recall":
        return clicked_exposed, outcome.valid
    return clicked_exposed, outcome.exposed


def full_stage_targets(
    stage: str, outcome: FunnelOutcome, labels: FullStageLabels = FullStageLabels()
) -> tuple[Tensor, Tensor]:
    """FS-LTR targets ``(targets (B, N) float, samples (B, N) bool)`` (module docstring)."""
    check_stage(stage)
    if stage == "rank":
        return outcome.clicked.float(), outcome.labelled
    targets = torch.full(outcome.valid.shape, labels.negative_target, device=outcome.valid.device)
    targets = torch.where(outcome.passed, torch.full_like(targets, labels.pass_target), targets)
    targets = torch.where(outcome.clicked, torch.full_like(targets, labels.click_target), targets)
    return targets * outcome.valid, outcome.valid


def downstream_selection(ctr: Tensor, bids: Optional[Tensor], mask: Tensor, top: int) -> Tensor:
    """The later stages' selection estimate: each request's ``top`` candidates by ``ctr · bid``
    (by ``ctr`` when ``bids`` is None) among ``mask`` — (B, N) bool. Ties go to the lower index."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    score = ctr if bids is None else ctr * bids
    score = torch.where(mask, score, torch.full_like(score, float("-inf")))
    k = min(top, score.shape[1])
    idx, _ = top_ranked(score, k)
    chosen = torch.zeros_like(mask)
    chosen.scatter_(1, idx, True)
    return chosen & mask
