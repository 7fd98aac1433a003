"""RequestStream: train / full composition, collate, sharding over ranks × workers, loader resume."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from egakit.data.collate import RequestCollate
from egakit.data.request_stream import RequestLoader, RequestStream
from egakit.features import CandidateSets, LocalAdStore, ParquetUserStore
from egakit.sim.io import load_world_meta, read_requests, read_table

NEG = 20
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")


@pytest.fixture(scope="module")
def stores(tiny_world):
    ad_store = LocalAdStore(tiny_world)
    return {
        "ad_store": ad_store,
        "candidate_sets": CandidateSets(tiny_world, ad_store),
        "user_store": ParquetUserStore(tiny_world),
    }


@pytest.fixture(scope="module")
def requests(tiny_world):
    table = read_requests(tiny_world, "pretrain")
    return {r["request_id"]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def set_ids(tiny_world):
    table = read_table(tiny_world, "candidate_sets")
    return dict(zip(table["candidate_set_id"].to_pylist(), table["ad_ids"].to_pylist()))


def test_train_mode_composition(tiny_world, stores, requests, set_ids):
    k = load_world_meta(tiny_world)["K"]
    samples = list(RequestStream(tiny_world, "pretrain", mode="train", neg_samples=NEG, limit=200, **stores))
    assert len(samples) == 200
    store = stores["ad_store"]
    for s in samples:
        r = requests[s["request_id"]]
        cand = s["cand_ids"].tolist()
        n_plat = min(len(r["platform_ids"]), NEG)
        full_set = set_ids[r["candidate_set_id"]]
        assert cand[:k] == r["exposed_ids"]  # the K exposed ads, slot order
        assert cand[k : k + n_plat] == r["platform_ids"][:n_plat]  # platform-labelled first
        assert len(cand) == k + min(NEG, len(full_set) - k)  # N_s unexposed (fewer if the set is small)
        assert len(set(cand)) == len(cand) and set(cand) <= set(full_set)
        assert np.array_equal(store.ids[s["cand_rows"]], s["cand_ids"])
        want = np.zeros(len(cand), np.float32)
        want[:k], want[k : k + n_plat] = r["clicks"], r["platform_clicks"][:n_plat]
        assert np.array_equal(s["labels"], want)
        assert s["label_mask"].tolist() == [True] * (k + n_plat) + [False] * (len(cand) - k - n_plat)
        assert s["exposed_slot"].tolist() == list(range(k)) + [-1] * (len(cand) - k)
        assert s["exposed_index"].tolist() == list(range(k)) and s["exposed_clicks"].tolist() == r["clicks"]
        assert s["user_feats"].tolist()[-2:] == [r["hour"], r["geo_cell"]]
        assert len(s["bhv_feats"]) > 0 and not s["is_pad"]


def test_train_sampling_is_seeded_per_epoch_and_favours_popular(tiny_world, stores):
    extra = 8  # popularity-sampled beyond the platform-labelled ones
    neg = load_world_meta(tiny_world)["logging_policy"]["platform_sample"] + extra
    stream = RequestStream(tiny_world, "pretrain", mode="train", neg_samples=neg, limit=4, **stores)
    sizes = stores["candidate_sets"].sizes([s["candidate_set_id"] for s in stream])
    big = int(np.argmax(sizes))  # a request whose set leaves room for sampling
    first = [s["cand_ids"].tolist() for s in stream]
    assert [s["cand_ids"].tolist() for s in stream] == first  # same epoch → same candidates
    seen: Counter = Counter()
    epochs = 60
    for epoch in range(1, epochs + 1):
        stream.set_epoch(epoch)
        s = list(stream)[big]
        seen.update(s["cand_ids"][s["label_mask"] == 0].tolist())  # the popularity-sampled ones
    assert sum(seen.values()) == extra * epochs and len(seen) > extra  # fresh samples each epoch
    store = stores["ad_store"]
    all_ids = stores["candidate_sets"].ids(int(s["candidate_set_id"]))
    pop = store.popularity(store.rows(all_ids))
    freq = np.array([seen.get(int(a), 0) for a in all_ids]) / epochs
    top, bottom = np.argsort(pop)[-10:], np.argsort(pop)[:10]
    assert freq[top].mean() > freq[bottom].mean()  # ∝ popularity, without replacement


def test_full_mode_is_the_whole_candidate_set(tiny_world, stores, requests, set_ids):
    k = load_world_meta(tiny_world)["K"]
    for s in RequestStream(tiny_world, "pretrain", mode="full", limit=60, **stores):
        r = requests[s["request_id"]]
        cand = s["cand_ids"].tolist()
        assert cand == set_ids[r["candidate_set_id"]]
        assert [cand[i] for i in s["exposed_index"]] == r["exposed_ids"]
        slots = s["exposed_slot"]
        assert sorted(slots[slots >= 0].tolist()) == list(range(k))
        assert all(cand[i] == r["exposed_ids"][slots[i]] for i in np.flatnonzero(slots >= 0))
        labelled = {cand[i]: s["labels"][i] for i in np.flatnonzero(s["label_mask"])}
        assert labelled == {**dict(zip(r["exposed_ids"], r["clicks"])), **dict(zip(r["platform_ids"], r["platform_clicks"]))}


def test_collate_pads_and_masks(tiny_world, stores):
    stream = RequestStream(tiny_world, "pretrain", mode="full", limit=40, **stores)
    samples = list(stream)
    sizes = [len(s["cand_ids"]) for s in samples]
    chosen = [samples[int(np.argmin(sizes))], samples[int(np.argmax(sizes))]]
    chosen[0] = {**chosen[0], "bhv_feats": chosen[0]["bhv_feats"][:2]}  # a short sequence next to a long one
    batch = RequestCollate(stores["ad_store"])(chosen)
    n, length = max(sizes), max(len(s["bhv_feats"]) for s in chosen)
    assert batch.cand_ids.shape == (2, n) and batch.bhv_feats.shape == (2, length, 5)
    m = min(sizes)
    assert batch.cand_mask[0].tolist() == [True] * m + [False] * (n - m)
    assert (batch.cand_ids[0, m:] == -1).all() and (batch.cand_rows[0, m:] == 0).all()
    assert (batch.bids[0, m:] == 0).all() and (batch.exposed_slot[0, m:] == -1).all()
    assert not batch.label_mask[0, m:].any() and (batch.labels[0, m:] == 0).all()
    store = stores["ad_store"]
    assert torch.equal(batch.bids[1], torch.from_numpy(store.bids(chosen[1]["cand_rows"])))
    assert batch.bhv_mask[0].tolist() == [True] * 2 + [False] * (length - 2)
    assert (batch.bhv_feats[0, 2:] == 0).all()
    assert batch.cand_feats is None and batch.cross_feats is None
    assert batch.user_feats.shape == (2, 5) and batch.loc.dtype == torch.float32
    for i, s in enumerate(chosen):
        assert torch.equal(batch.cand_ids[i, batch.exposed_index[i]], torch.from_numpy(s["cand_ids"][s["exposed_index"]]))


@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_sharding_two_ranks_two_workers(tiny_world, stores, remainder):
    total = load_world_meta(tiny_world)["requests_per_split"]["test"]
    world_size, workers = 2, 2
    per_rank = []
    for rank in range(world_size):
        ds = RequestStream(
            tiny_world, "test", mode="train", neg_samples=4, num_workers=workers, rank=rank,
            world_size=world_size, remainder=remainder, shuffle=True, seed=3, **stores,
        )
        loader = DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=list)
        got = [(int(s["request_id"]), bool(s["is_pad"])) for batch in loader for s in batch]
        assert len(got) == len(ds)
        per_rank.append(got)
    assert len(per_rank[0]) == len(per_rank[1])  # equal counts: DDP never waits on a rank
    real = [rid for got in per_rank for rid, pad in got if not pad]
    pads = [rid for got in per_rank for rid, pad in got if pad]
    all_ids = set(read_requests(tiny_world, "test", columns=["request_id"])["request_id"].to_pylist())
    assert len(real) == len(set(real)) and set(real) <= all_ids  # each request read by one rank and worker
    if remainder == "drop":
        assert not pads and len(real) == total - total % world_size
    else:
        assert set(real) == all_ids and len(pads) == -total % world_size


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_resume_continues_exactly(tiny_world, stores, num_workers):
    def loader():
        stream = RequestStream(
            tiny_world, "pretrain", mode="train", neg_samples=6, batch_size=5, num_workers=num_workers,
            shuffle=True, shuffle_buffer=16, limit=97, seed=11, **stores,
        )
        stream.set_epoch(2)
        return RequestLoader(stream, RequestCollate(stores["ad_store"]))

    def key(batch):
        return batch.request_id.tolist(), batch.cand_ids.tolist()

    full_loader = loader()
    full = [key(b) for b in full_loader]
    assert len(full) == len(full_loader)
    assert [key(b) for b in full_loader] == full  # a finished pass resets: the next one replays the epoch
    assert sorted(r for ids, _ in full for r in ids) == sorted(set(r for ids, _ in full for r in ids))
    for stop in (1, 4, len(full) - 1):
        first = loader()
        head = []
        for b in first:
            head.append(key(b))
            if len(head) == stop:
                break
        state = first.state_dict()
        assert state["consumed_batches"] == stop and state["epoch"] == 2
        resumed = loader()
        resumed.dataset.set_epoch(0)
        resumed.load_state_dict(state)
        tail = [key(b) for b in resumed]
        assert head + tail == full, f"resume after {stop} batches"


def test_resume_refuses_another_layout(tiny_world, stores):
    a = RequestStream(tiny_world, "pretrain", batch_size=4, limit=50, **stores)
    b = RequestStream(tiny_world, "pretrain", batch_size=8, limit=50, **stores)
    with pytest.raises(ValueError, match="batch_size"):
        b.load_state_dict(a.state_dict())


def test_worker_count_must_match(tiny_world, stores):
    ds = RequestStream(tiny_world, "pretrain", limit=10, num_workers=2, **stores)
    with pytest.raises(RuntimeError, match="num_workers"):
        next(iter(ds))


def test_collated_batches_flag_shard_padding(tiny_world, stores):
    """Padded evaluation copies reach the model flagged, so metrics can skip them."""
    total = load_world_meta(tiny_world)["requests_per_split"]["test"]
    assert total % 2, "the tiny test split must leave a remainder for this test"
    ds = RequestStream(
        tiny_world, "test", mode="full", num_workers=2, rank=1, world_size=2, remainder="pad", **stores,
    )
    collate = RequestCollate(stores["ad_store"])
    batches = list(DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate))
    flags = torch.cat([batch.is_pad for batch in batches])
    real = torch.cat([batch.real_requests() for batch in batches])
    samples = [s for batch in DataLoader(ds, batch_size=8, num_workers=2, collate_fn=list) for s in batch]
    assert flags.dtype == torch.bool and len(flags) == len(ds)
    assert torch.equal(real, ~flags)
    assert flags.tolist() == [bool(s["is_pad"]) for s in samples]
    assert flags.any(), "rank 1 of 2 must carry padding when the split leaves a remainder"


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_consume_the_global_batches_of_one_process(tiny_world, stores, workers):
    """Global batch j of a 2-rank run (b requests per rank) holds the requests of batch j of a
    one-process run with batch 2b, whatever the worker count: DDP's averaged gradient is the
    one-process gradient."""
    b, limit = 4, 64

    def batches(rank, world_size, batch_size, num_workers):
        ds = RequestStream(tiny_world, "pretrain", mode="train", neg_samples=4, batch_size=batch_size,
                           num_workers=num_workers, rank=rank, world_size=world_size, shuffle=True,
                           shuffle_buffer=16, limit=limit, seed=5, remainder="drop", **stores)
        loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
        return [sorted(int(s["request_id"]) for s in batch) for batch in loader]

    one = batches(0, 1, 2 * b, 0)
    ranks = [batches(r, 2, b, workers) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == limit // (2 * b)
    assert [sorted(x + y) for x, y in zip(*ranks)] == one
    assert batches(0, 1, 2 * b, workers) == one  # the worker count does not change the order
