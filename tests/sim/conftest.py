"""Shared fixtures of the world tests: the oracle and request batches of the session-wide tiny world (tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from egakit.batch import RequestBatch
from egakit.sim import Oracle, read_table
from egakit.sim.schema import BEHAVIOUR_CATEGORICAL, CONTEXT_CATEGORICAL, USER_CATEGORICAL


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The oracle's ops are small: one intra-op thread avoids OpenMP spinning on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_oracle(tiny_world):
    return Oracle.from_world(tiny_world)


def build_batch(world_dir, oracle: Oracle, requests: pa.Table) -> RequestBatch:
    """A RequestBatch of ``requests`` with each request's full candidate set (ids padded with −1),
    its exposures and labels, the way a DataModule lays it out (behaviours left empty)."""
    users = read_table(world_dir, "users", ["user_id", *USER_CATEGORICAL])
    ads = read_table(world_dir, "ads", ["ad_id", "bid"])
    ad_ids, bids = ads.column("ad_id").to_numpy(), ads.column("bid").to_numpy()
    user_ids = users.column("user_id").to_numpy()
    B = requests.num_rows
    K = len(requests.column("exposed_ids")[0])
    col = lambda name: requests.column(name).to_numpy()  # noqa: E731
    urow = np.searchsorted(user_ids, col("user_id"))
    prof = np.stack([users.column(c).to_numpy()[urow] for c in USER_CATEGORICAL], axis=1)
    ctx = np.stack([col(c) for c in CONTEXT_CATEGORICAL], axis=1)
    sets = [oracle.candidate_set_ids(int(s)).numpy() for s in col("candidate_set_id")]
    N = max(len(s) for s in sets)
    cand = np.full((B, N), -1, dtype=np.int64)
    for b, s in enumerate(sets):
        cand[b, : len(s)] = s
    mask = cand >= 0
    rows = np.where(mask, np.searchsorted(ad_ids, cand), 0)
    exposed = np.asarray(requests.column("exposed_ids").combine_chunks().flatten()).reshape(B, K)
    clicks = np.asarray(requests.column("clicks").combine_chunks().flatten()).reshape(B, K).astype(np.float32)
    slot = np.full((B, N), -1, dtype=np.int64)
    index = np.zeros((B, K), dtype=np.int64)
    labels = np.zeros((B, N), dtype=np.float32)
    for b in range(B):
        for k in range(K):
            pos = int(np.searchsorted(sets[b], exposed[b, k]))
            slot[b, pos], index[b, k], labels[b, pos] = k, pos, clicks[b, k]
    L = 1
    return RequestBatch(
        request_id=torch.from_numpy(col("request_id").astype(np.int64)),
        user_id=torch.from_numpy(col("user_id").astype(np.int64)),
        candidate_set_id=torch.from_numpy(col("candidate_set_id").astype(np.int64)),
        loc=torch.from_numpy(np.stack([col("loc_x"), col("loc_y")], axis=1)),
        user_feats=torch.from_numpy(np.concatenate([prof, ctx], axis=1).astype(np.int64)),
        bhv_feats=torch.zeros(B, L, len(BEHAVIOUR_CATEGORICAL), dtype=torch.int64),
        bhv_mask=torch.zeros(B, L, dtype=torch.bool),
        cand_ids=torch.from_numpy(cand),
        cand_rows=torch.from_numpy(rows),
        cand_mask=torch.from_numpy(mask),
        bids=torch.from_numpy(np.where(mask, bids[rows], 0.0).astype(np.float32)),
        labels=torch.from_numpy(labels),
        label_mask=torch.from_numpy(slot >= 0),
        exposed_slot=torch.from_numpy(slot),
        exposed_index=torch.from_numpy(index),
        exposed_clicks=torch.from_numpy(clicks),
    )


@pytest.fixture(scope="session")
def make_batch():
    return build_batch
