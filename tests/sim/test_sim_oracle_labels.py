"""Oracle labels (the clicks oracle AUC and Recall@k are measured against) are seeded per request:
the same for any batch size, padding, candidate order or process count."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pyarrow as pa
import pytest
import torch

from egakit.sim import Oracle, read_requests
from egakit.sim.oracle import label_uniforms

SEED = 7
REQUESTS = 16


def _labels_by_request(world_dir, oracle, requests: pa.Table, batch_size: int, build) -> dict:
    """{request id: {ad id: label}} over ``requests`` scored in batches of ``batch_size``."""
    out = {}
    for start in range(0, requests.num_rows, batch_size):
        batch = build(world_dir, oracle, requests.slice(start, batch_size))
        clicks = oracle.sampled_clicks(batch, SEED)
        for b in range(clicks.shape[0]):
            valid = batch.cand_mask[b]
            ids = batch.cand_ids[b][valid].tolist()
            out[int(batch.request_id[b])] = dict(zip(ids, clicks[b][valid].tolist()))
    return out


def _worker(args):
    world_dir, rows = args
    from tests.sim.conftest import build_batch

    torch.set_num_threads(1)
    oracle = Oracle.from_world(world_dir)
    requests = read_requests(world_dir, "test").slice(0, REQUESTS).take(pa.array(rows))
    return _labels_by_request(world_dir, oracle, requests, 4, build_batch)


@pytest.fixture(scope="module")
def test_requests(tiny_world):
    return read_requests(tiny_world, "test").slice(0, REQUESTS)


def test_labels_are_the_same_for_any_batch_size(tiny_world, tiny_oracle, test_requests, make_batch):
    by_size = {bs: _labels_by_request(tiny_world, tiny_oracle, test_requests, bs, make_batch) for bs in (1, 4, 16)}
    assert by_size[1] == by_size[4] == by_size[16]
    labels = np.array([v for r in by_size[1].values() for v in r.values()])
    assert 0 < labels.sum() < len(labels)  # real draws, not all 0 or all 1


def test_labels_ignore_padding_and_candidate_order(tiny_world, tiny_oracle, test_requests, make_batch):
    batch = make_batch(tiny_world, tiny_oracle, test_requests.slice(0, 4))
    base = tiny_oracle.sampled_clicks(batch, SEED)
    B, N = batch.cand_ids.shape
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    pad = 5
    fields = {}
    for name in ("cand_ids", "cand_rows", "cand_mask", "bids"):
        value = getattr(batch, name)[:, perm]
        filler = torch.full((B, pad), -1 if name == "cand_ids" else 0, dtype=value.dtype)
        fields[name] = torch.cat([value, filler], dim=1)
    shuffled = batch.__class__(**{**batch.__dict__, **fields})
    again = tiny_oracle.sampled_clicks(shuffled, SEED)
    assert torch.equal(again[:, :N], base[:, perm])
    assert not again[:, N:].any()


def test_labels_are_the_same_across_two_processes(tiny_world, tiny_oracle, test_requests, make_batch):
    single = _labels_by_request(tiny_world, tiny_oracle, test_requests, 16, make_batch)
    shards = [(str(tiny_world), list(range(rank, REQUESTS, 2))) for rank in range(2)]
    with mp.get_context("spawn").Pool(2) as pool:
        merged = {}
        for part in pool.map(_worker, shards):
            merged.update(part)
    assert merged == single


def test_label_uniforms_depend_on_seed_request_and_ad_only():
    req = torch.tensor([3, 4])
    ads = torch.tensor([[10, 11, 12], [10, 11, -1]])
    u = label_uniforms(1, req, ads)
    assert u.shape == (2, 3) and u.dtype == torch.float64
    assert ((u >= 0) & (u < 1)).all()
    assert torch.equal(label_uniforms(1, req[:1], ads[:1, [2, 0]]), u[:1, [2, 0]])
    assert not torch.equal(label_uniforms(2, req, ads), u)
    assert u[0, 0] != u[1, 0]  # same ad, another request
    big = label_uniforms(0, torch.arange(20_000), torch.zeros(20_000, 1, dtype=torch.int64)).flatten()
    assert abs(big.mean().item() - 0.5) < 0.01  # uniform
