"""Hybrid feature service (docs/design.md §2, V1 §3.2).

- :class:`LocalAdStore`: the city's ads in memory (id → row, categorical features, bids), with a
  torch view so a batch's candidate features are one ``index_select`` on the batch's device.
- :class:`CandidateSets`: the per-cell candidate sets requests refer to.
- :class:`RemoteUserStore` (interface) / :class:`ParquetUserStore` (default): user profile and
  behaviour sequence, fetched once per request.
- :mod:`egakit.features.cross`: optional explicit cross features (baselines, ablations).
"""
from egakit.features.cross import CROSS_FEATURES, CrossFeatureSpec, cross_features
from egakit.features.local_store import AdTensors, CandidateSets, IdIndex, LocalAdStore
from egakit.features.remote_store import ParquetUserStore, RemoteUserStore, UserFeatures

__all__ = [
    "AdTensors",
    "CROSS_FEATURES",
    "CandidateSets",
    "CrossFeatureSpec",
    "IdIndex",
    "LocalAdStore",
    "ParquetUserStore",
    "RemoteUserStore",
    "UserFeatures",
    "cross_features",
]
