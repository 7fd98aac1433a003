"""Evaluation metrics as torchmetrics ``Metric``s (DDP-synced sum / cat states; docs/design.md §6).

- :class:`RecallAtK` (pre-rank), :class:`AUC` (rank) — :mod:`egakit.metrics.ranking`
- :class:`ExpectedCTR`, :class:`ExpectedRPM`, :class:`PsiMetric` — :mod:`egakit.metrics.auction`
- :class:`Deviation` — :mod:`egakit.metrics.calibration`
"""
from egakit.metrics.auction import ExpectedCTR, ExpectedRPM, PsiMetric
from egakit.metrics.calibration import Deviation
from egakit.metrics.ranking import AUC, DEFAULT_RECALL_K, RecallAtK

__all__ = ["AUC", "DEFAULT_RECALL_K", "Deviation", "ExpectedCTR", "ExpectedRPM", "PsiMetric", "RecallAtK"]
