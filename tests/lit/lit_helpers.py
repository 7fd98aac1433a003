"""Helpers of the training-phase tests (imported by conftest.py and the tests): paths, the
`ega fit` arguments of a tiny phase, a working-directory switch and a hand-made request batch."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from egakit.batch import RequestBatch
from egakit.sim.schema import AD_CATEGORICAL, BEHAVIOUR_CATEGORICAL, CONTEXT_CATEGORICAL, USER_CATEGORICAL

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIGS = REPO / "configs" / "v1" / "tiny"
PHASES = ("pretrain", "reward", "rlaf", "payment")
#: Steps each phase of the session chain trains (a few, so frozen/trained modules can be compared).
CHAIN_STEPS = 3
HAND_VOCAB = {
    "category": 5, "brand": 5, "price_level": 6, "geo_cell": 4,
    "age_bucket": 3, "gender": 3, "home_cell": 4, "hour": 24, "popularity_bucket": 4,
}


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def phase_args(phase: str, world: Path, *extra: str) -> list[str]:
    """`ega fit` arguments of a tiny phase config on ``world``."""
    return ["fit", "-c", str(TINY_CONFIGS / f"{phase}.yaml"), f"--data.init_args.world_dir={world}", *extra]



def hand_batch(bids: list[list[float]], K: int, valid: list[list[bool]] | None = None) -> RequestBatch:
    """A hand-made batch: B requests × N candidates with the given bids (0 where invalid), every
    feature id 0, one behaviour per user."""
    b = torch.tensor(bids, dtype=torch.float32)
    B, N = b.shape
    mask = torch.ones(B, N, dtype=torch.bool) if valid is None else torch.tensor(valid)
    b = torch.where(mask, b, torch.zeros_like(b))
    exposed = torch.stack([row.nonzero().squeeze(1)[:K] for row in mask])
    exposed_slot = torch.full((B, N), -1, dtype=torch.long).scatter_(1, exposed, torch.arange(K).expand(B, K).contiguous())
    return RequestBatch(
        request_id=torch.arange(B),
        user_id=torch.arange(B),
        candidate_set_id=torch.zeros(B, dtype=torch.long),
        loc=torch.zeros(B, 2),
        user_feats=torch.zeros(B, len(USER_CATEGORICAL) + len(CONTEXT_CATEGORICAL), dtype=torch.long),
        bhv_feats=torch.zeros(B, 1, len(BEHAVIOUR_CATEGORICAL), dtype=torch.long),
        bhv_mask=torch.ones(B, 1, dtype=torch.bool),
        cand_ids=torch.where(mask, torch.arange(N).expand(B, N) + 100, torch.full((B, N), -1)),
        cand_rows=torch.zeros(B, N, dtype=torch.long),
        cand_mask=mask,
        bids=b,
        labels=torch.zeros(B, N),
        label_mask=mask.clone(),
        exposed_slot=exposed_slot,
        exposed_index=exposed,
        exposed_clicks=torch.zeros(B, K),
        cand_feats=torch.zeros(B, N, len(AD_CATEGORICAL), dtype=torch.long),
    )
