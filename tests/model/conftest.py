"""Helpers for the model tests: random RequestBatches built directly from tensors, and the
candidate / behaviour permutations and paddings the invariance tests need."""
from __future__ import annotations

import torch
import pytest

from egakit.batch import RequestBatch
from egakit.model import EGAV1Config
from egakit.sim.schema import AD_CATEGORICAL, BEHAVIOUR_CATEGORICAL, CONTEXT_CATEGORICAL, USER_CATEGORICAL
from egakit.model.embedding import VOCABULARY_OF

VOCAB_SIZES = {
    "category": 7,
    "brand": 11,
    "price_level": 6,
    "geo_cell": 9,
    "age_bucket": 5,
    "gender": 3,
    "home_cell": 9,
    "hour": 24,
    "popularity_bucket": 16,
}
CROSS_VOCAB_SIZES = (5, 13)


def small_config(**overrides) -> EGAV1Config:
    """A tiny EGA-V1 (d=16, 2 heads, 8 clusters, 3 layers, fusion after layers 2 and 3)."""
    base = dict(
        d=16, n_heads=2, n_clusters=8, m=3, m_c=2, m_e=2, K=3, feature_emb_dim=4,
        ctr_mlp=(8, 4), eval_mlp=(8,), pay_mlp=(8,), query_chunk=7,
        # The kernels' torch reference (the CPU production path); the Triton path is the kernels' tests' job.
        kernel_backend="torch",
    )
    base.update(overrides)
    return EGAV1Config(**base)


def _random_ids(generator: torch.Generator, shape: tuple[int, ...], fields) -> torch.Tensor:
    cols = [torch.randint(0, VOCAB_SIZES[VOCABULARY_OF[f]], shape, generator=generator) for f in fields]
    return torch.stack(cols, dim=-1)


def make_batch(
    B: int = 2,
    N: int = 24,
    L: int = 10,
    K: int = 3,
    *,
    seed: int = 0,
    min_valid: int = 6,
    cross: bool = False,
    valid_counts=None,
) -> RequestBatch:
    """A random batch; padding is scattered through the candidate axis (not only at the end)
    and padding rows carry random features, so tests catch any leak from them."""
    g = torch.Generator().manual_seed(seed)
    if valid_counts is None:
        valid_counts = [int(torch.randint(min_valid, N + 1, (1,), generator=g)) for _ in range(B)]
    cand_mask = torch.zeros(B, N, dtype=torch.bool)
    for b, count in enumerate(valid_counts):
        cand_mask[b, torch.randperm(N, generator=g)[:count]] = True
    bhv_counts = [int(torch.randint(1, L + 1, (1,), generator=g)) for _ in range(B)]
    bhv_mask = torch.arange(L).unsqueeze(0) < torch.tensor(bhv_counts).unsqueeze(1)
    bhv_feats = _random_ids(g, (B, L), BEHAVIOUR_CATEGORICAL) * bhv_mask.unsqueeze(-1)
    cand_ids = torch.where(cand_mask, torch.arange(B * N).view(B, N) + 1000, torch.full((B, N), -1))
    bids = torch.where(cand_mask, torch.rand(B, N, generator=g) * 3 + 0.1, torch.zeros(B, N))
    exposed_index = torch.stack([torch.cat([row.nonzero().squeeze(1), torch.zeros(K, dtype=torch.long)])[:K] for row in cand_mask])
    exposed_slot = torch.full((B, N), -1, dtype=torch.long)
    exposed_slot.scatter_(1, exposed_index, torch.arange(K).expand(B, K).contiguous())
    labels = (torch.rand(B, N, generator=g) < 0.3).float() * cand_mask
    return RequestBatch(
        request_id=torch.arange(B),
        user_id=torch.arange(B) + 7,
        candidate_set_id=torch.zeros(B, dtype=torch.long),
        loc=torch.rand(B, 2, generator=g),
        user_feats=_random_ids(g, (B,), USER_CATEGORICAL + CONTEXT_CATEGORICAL),
        bhv_feats=bhv_feats,
        bhv_mask=bhv_mask,
        cand_ids=cand_ids,
        cand_rows=torch.where(cand_mask, torch.arange(N).expand(B, N), 0),
        cand_mask=cand_mask,
        bids=bids,
        labels=labels,
        label_mask=cand_mask.clone(),
        exposed_slot=exposed_slot,
        exposed_index=exposed_index,
        exposed_clicks=torch.zeros(B, K),
        cand_feats=_random_ids(g, (B, N), AD_CATEGORICAL),
        cross_feats=(
            torch.stack([torch.randint(0, v, (B, N), generator=g) for v in CROSS_VOCAB_SIZES], -1) if cross else None
        ),
    )


_CANDIDATE_FIELDS = ("cand_ids", "cand_rows", "cand_mask", "bids", "labels", "label_mask", "exposed_slot", "cand_feats", "cross_feats")


def permute_candidates(batch: RequestBatch, perm: torch.Tensor) -> RequestBatch:
    """Reorder the candidate axis by ``perm`` (new position j holds old candidate perm[j])."""
    changes = {f: getattr(batch, f)[:, perm] for f in _CANDIDATE_FIELDS if getattr(batch, f) is not None}
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    changes["exposed_index"] = inverse[batch.exposed_index]
    return batch.replace(**changes)


def pad_candidates(batch: RequestBatch, extra: int, seed: int = 123) -> RequestBatch:
    """Append ``extra`` padding candidates with random (non-zero) features."""
    g = torch.Generator().manual_seed(seed)
    B = batch.batch_size

    def grow(name, fill):
        value = getattr(batch, name)
        if value is None:
            return None
        pad = fill(value)
        return torch.cat([value, pad], dim=1)

    return batch.replace(
        cand_ids=grow("cand_ids", lambda v: torch.full((B, extra), -1, dtype=v.dtype)),
        cand_rows=grow("cand_rows", lambda v: torch.zeros(B, extra, dtype=v.dtype)),
        cand_mask=grow("cand_mask", lambda v: torch.zeros(B, extra, dtype=torch.bool)),
        bids=grow("bids", lambda v: torch.zeros(B, extra)),
        labels=grow("labels", lambda v: torch.zeros(B, extra)),
        label_mask=grow("label_mask", lambda v: torch.zeros(B, extra, dtype=torch.bool)),
        exposed_slot=grow("exposed_slot", lambda v: torch.full((B, extra), -1, dtype=v.dtype)),
        cand_feats=grow("cand_feats", lambda v: _random_ids(g, (B, extra), AD_CATEGORICAL)),
        cross_feats=grow(
            "cross_feats",
            lambda v: torch.stack([torch.randint(0, s, (B, extra), generator=g) for s in CROSS_VOCAB_SIZES], -1),
        ),
    )


def pad_behaviours(batch: RequestBatch, extra: int, seed: int = 321) -> RequestBatch:
    """Append ``extra`` padding behaviours with random features."""
    g = torch.Generator().manual_seed(seed)
    B = batch.batch_size
    return batch.replace(
        bhv_feats=torch.cat([batch.bhv_feats, _random_ids(g, (B, extra), BEHAVIOUR_CATEGORICAL)], dim=1),
        bhv_mask=torch.cat([batch.bhv_mask, torch.zeros(B, extra, dtype=torch.bool)], dim=1),
    )


@pytest.fixture(autouse=True)
def single_thread():
    """These tensors are tiny: one intra-op thread is faster and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
