"""What the performance suite runs: model configurations and synthetic request batches.

Configurations (``L`` = behaviours per request):

- ``paper``: EGA-V1's own sizes (V1 §5.1.4; ``EGAV1Config()`` defaults): d = 128, N_h = 4,
  N_c = 128, m = 6, m_c = 2 (m_k = 3 fusions), m_e = 3, K = 5, L = 1000. About 90 s per request at
  N = 10^5 on one CPU core, so the CPU runs use it only with ``--paper``.
- ``cpu`` (the CPU default): the same architecture at a size a 2-core CPU sweeps to N = 10^5 in
  minutes: d = 64, N_h = 4, N_c = 32, m = 2, m_c = 1 (a fusion after each layer), m_e = 1, K = 5,
  L = 256, MLPs (64, 16).
- ``quick``: a tiny model for smoke runs and tests (d = 16, N_c = 8, L = 16).

Requests are synthetic :class:`~egakit.batch.RequestBatch` tensors (all N candidates and L
behaviours valid, random ids within realistic vocabularies, log-normal bids): the cost of a
forward pass depends on the shapes only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from egakit.batch import RequestBatch
from egakit.model import EGAV1, EGAV1Config
from egakit.model.embedding import VOCABULARY_OF
from egakit.sim.schema import AD_CATEGORICAL, BEHAVIOUR_CATEGORICAL, CONTEXT_CATEGORICAL, USER_CATEGORICAL

#: Vocabulary sizes of a city-sized world (docs/design.md §1: ~50 categories, ~2,000 brands, a city grid).
VOCAB_SIZES = {
    "category": 50,
    "brand": 2000,
    "price_level": 6,
    "geo_cell": 1024,
    "age_bucket": 8,
    "gender": 3,
    "home_cell": 1024,
    "hour": 24,
    "popularity_bucket": 16,
}

#: Candidate counts of the sweeps (docs/design.md §10: N = 10^3 … 10^5).
SWEEP_NS = (1_000, 3_000, 10_000, 30_000, 100_000)
QUICK_NS = (300, 1_000, 3_000)


@dataclass(frozen=True)
class Workload:
    """A named model configuration plus the behaviour length L it is run with."""

    name: str
    config: EGAV1Config = field(compare=False)
    L: int

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": self.name, "L": self.L, "d": c.d, "n_heads": c.n_heads, "n_clusters": c.n_clusters, "m": c.m,
            "m_c": c.m_c, "m_k": c.m_k, "m_e": c.m_e, "K": c.K, "feature_emb_dim": c.feature_emb_dim,
            "ctr_mlp": list(c.ctr_mlp), "eval_mlp": list(c.eval_mlp), "pay_mlp": list(c.pay_mlp),
            "ffn_mult": c.ffn_mult, "query_chunk": c.query_chunk, "kernel_backend": c.kernel_backend,
        }


def workload(name: str) -> Workload:
    """``paper``, ``cpu`` or ``quick`` (module docstring)."""
    if name == "paper":
        return Workload("paper", EGAV1Config(), L=1000)
    if name == "cpu":
        config = EGAV1Config(
            d=64, n_heads=4, n_clusters=32, m=2, m_c=1, m_e=1, K=5, feature_emb_dim=16,
            ctr_mlp=(64, 16), eval_mlp=(64, 16), pay_mlp=(64, 16),
        )
        return Workload("cpu", config, L=256)
    if name == "quick":
        config = EGAV1Config(
            d=16, n_heads=2, n_clusters=8, m=2, m_c=1, m_e=1, K=3, feature_emb_dim=4,
            ctr_mlp=(8, 4), eval_mlp=(8,), pay_mlp=(8,),
        )
        return Workload("quick", config, L=16)
    raise ValueError(f"unknown workload {name!r}: use 'paper', 'cpu' or 'quick'")


def default_workload(device: str, *, paper: bool, quick: bool) -> Workload:
    """``quick`` for smoke runs, ``paper`` with ``--paper`` or on CUDA, else ``cpu``."""
    if quick:
        return workload("quick")
    return workload("paper" if paper or device == "cuda" else "cpu")


def _ids(generator: torch.Generator, shape: tuple[int, ...], columns: tuple[str, ...]) -> torch.Tensor:
    cols = [torch.randint(0, VOCAB_SIZES[VOCABULARY_OF[c]], shape, generator=generator) for c in columns]
    return torch.stack(cols, dim=-1)


def request_batch(N: int, L: int, K: int, *, B: int = 1, seed: int = 0, device: str = "cpu") -> RequestBatch:
    """B synthetic requests with N valid candidates and L valid behaviours each."""
    g = torch.Generator().manual_seed(seed)
    cand_mask = torch.ones(B, N, dtype=torch.bool)
    bids = torch.exp(torch.randn(B, N, generator=g) * 0.5)
    exposed_index = torch.arange(K).expand(B, K).contiguous()
    exposed_slot = torch.full((B, N), -1, dtype=torch.long)
    exposed_slot[:, :K] = torch.arange(K)
    batch = RequestBatch(
        request_id=torch.arange(B),
        user_id=torch.arange(B),
        candidate_set_id=torch.zeros(B, dtype=torch.long),
        loc=torch.rand(B, 2, generator=g),
        user_feats=_ids(g, (B,), USER_CATEGORICAL + CONTEXT_CATEGORICAL),
        bhv_feats=_ids(g, (B, L), BEHAVIOUR_CATEGORICAL),
        bhv_mask=torch.ones(B, L, dtype=torch.bool),
        cand_ids=torch.arange(B * N).view(B, N),
        cand_rows=torch.arange(N).expand(B, N).contiguous(),
        cand_mask=cand_mask,
        bids=bids,
        labels=(torch.rand(B, N, generator=g) < 0.05).float(),
        label_mask=cand_mask.clone(),
        exposed_slot=exposed_slot,
        exposed_index=exposed_index,
        exposed_clicks=torch.zeros(B, K),
        cand_feats=_ids(g, (B, N), AD_CATEGORICAL),
    )
    return batch.to(device)


def build_model(config: EGAV1Config, *, device: str = "cpu", seed: int = 0) -> EGAV1:
    """A randomly initialised EGA-V1 in eval mode on ``device``."""
    torch.manual_seed(seed)
    return EGAV1(config, VOCAB_SIZES).to(device).eval()
