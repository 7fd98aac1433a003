"""Hybrid feature service: local ad store, candidate sets, remote user store, cross features."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from egakit.errors import WorldDataError
from egakit.features import CandidateSets, CrossFeatureSpec, LocalAdStore, ParquetUserStore, cross_features
from egakit.sim import schema
from egakit.sim.io import load_world_meta, read_table


@pytest.fixture(scope="module")
def ads(tiny_world):
    return read_table(tiny_world, "ads")


@pytest.fixture(scope="module")
def store(tiny_world):
    return LocalAdStore(tiny_world)


def test_local_store_rows_features_bids(store, ads):
    ids = ads["ad_id"].to_numpy()
    pick = np.random.default_rng(0).choice(ids, size=(3, 7))
    rows = store.rows(pick)
    assert rows.shape == (3, 7) and rows.dtype == np.int64
    assert (ids[rows] == pick).all()
    feats = store.features(rows)
    assert feats.shape == (3, 7, len(schema.AD_CATEGORICAL)) and feats.dtype == np.int64
    for j, name in enumerate(schema.AD_CATEGORICAL):
        assert (feats[..., j] == ads[name].to_numpy()[rows]).all(), name
    assert np.array_equal(store.bids(rows), ads["bid"].to_numpy()[rows])
    assert np.array_equal(store.popularity(rows), ads["popularity"].to_numpy()[rows])


def test_local_store_torch_view(store):
    rows_np = np.array([[0, 5, 3], [2, 2, len(store) - 1]])
    rows_t = store.rows(torch.from_numpy(store.ids[rows_np]))
    assert isinstance(rows_t, torch.Tensor) and torch.equal(rows_t, torch.from_numpy(rows_np))
    gathered = store.gather(rows_t)
    assert torch.equal(gathered, torch.from_numpy(store.features(rows_np)))
    assert store.as_tensor("cpu") is store.as_tensor(torch.device("cpu"))  # built once per device


def test_unknown_ad_id_names_field_and_position(store, ads):
    ids = ads["ad_id"].to_numpy()
    missing = int(ids.max()) + 1
    with pytest.raises(WorldDataError) as err:
        store.rows(np.array([ids[0], ids[1], missing]), field="cand_ids")
    assert err.value.field == "cand_ids" and err.value.row == 2 and str(missing) in str(err.value)
    known = set(ids.tolist())
    gap = next(i for i in range(int(ids[0]), int(ids[-1])) if i not in known)  # ids are sparse
    with pytest.raises(WorldDataError):
        store.rows([gap])
    assert store.rows(int(ids[3])) == 3 and store.rows([]).shape == (0,)


def test_store_pickles_by_path(store):
    clone = pickle.loads(pickle.dumps(store))
    assert np.array_equal(clone.ids, store.ids) and np.array_equal(clone.features(np.arange(5)), store.features(np.arange(5)))
    assert len(pickle.dumps(store)) < 1000  # the table itself never crosses a process boundary


def test_candidate_sets(tiny_world, store):
    table = read_table(tiny_world, "candidate_sets")
    sets = CandidateSets(tiny_world, store)
    assert len(sets) == table.num_rows
    for set_id, ad_ids in zip(table["candidate_set_id"].to_pylist()[:5], table["ad_ids"].to_pylist()[:5]):
        assert sets.ids(set_id).tolist() == ad_ids
        assert store.ids[sets.rows(set_id)].tolist() == ad_ids
        assert int(sets.sizes([set_id])[0]) == len(ad_ids)
    with pytest.raises(WorldDataError) as err:
        sets.ids(int(table["candidate_set_id"].to_numpy().max()) + 1)
    assert err.value.field == "candidate_set_id"


def test_remote_store_truncates_to_most_recent(tiny_world):
    users = read_table(tiny_world, "users")
    lengths = np.array([len(x) for x in users["bhv_ts"].to_pylist()])
    limit = 3
    picks = [int(np.flatnonzero(lengths > limit)[0])]  # a long sequence is cut ...
    picks += [int(u) for u in np.flatnonzero(lengths <= limit)[:1]]  # ... a short one (if any) is whole
    uids = users["user_id"].to_numpy()[picks]
    got = ParquetUserStore(tiny_world, max_behaviours=limit).get(uids)
    assert got.bhv_feats.shape[2] == len(schema.BEHAVIOUR_CATEGORICAL)
    for i, u in enumerate(picks):
        want_len = min(limit, lengths[u])
        assert got.bhv_len[i] == want_len
        for f, name in enumerate(schema.BEHAVIOUR_CATEGORICAL):
            full = users[name][u].as_py()
            assert got.sequence(i)[:, f].tolist() == full[len(full) - want_len :], name  # most recent, oldest first
        assert (got.bhv_feats[i, want_len:] == 0).all()
        assert got.profile[i].tolist() == [users[c][u].as_py() for c in schema.USER_CATEGORICAL]


def test_remote_store_as_of_and_unknown_user(tiny_world):
    users = read_table(tiny_world, "users")
    store = ParquetUserStore(tiny_world)
    assert store.max_behaviours == load_world_meta(tiny_world)["max_behaviours"]  # default L from world.json
    u = int(np.argmax([len(x) for x in users["bhv_ts"].to_pylist()]))
    ts = np.array(users["bhv_ts"][u].as_py())
    cutoff = int(ts[len(ts) // 2])
    got = store.get(users["user_id"].to_numpy()[[u, u]], as_of=np.array([cutoff, 10**9]))
    assert got.bhv_len[0] == min(store.max_behaviours, int((ts < cutoff).sum()))
    assert got.bhv_len[1] == min(store.max_behaviours, len(ts))
    with pytest.raises(WorldDataError) as err:
        store.get([int(users["user_id"].to_numpy().max()) + 1])
    assert err.value.field == "user_id"


def test_cross_features_by_hand():
    spec = CrossFeatureSpec(grid_width=4, num_categories=3)
    # one request at cell 5 (row 1, col 1), hour 2; candidates: same cell, neighbour, far, padding
    cand = torch.tensor([[[0, 0, 1, 5], [2, 0, 1, 6], [1, 0, 1, 15], [0, 0, 0, 0]]])  # category, brand, price, cell
    mask = torch.tensor([[True, True, True, False]])
    user = torch.tensor([[1, 1, 0, 2, 5]])  # age, gender, home, hour, geo_cell
    bhv = torch.zeros(1, 4, len(schema.BEHAVIOUR_CATEGORICAL), dtype=torch.long)
    bhv[0, :, 0] = torch.tensor([0, 0, 2, 0])  # categories; the last behaviour is padding
    bhv_mask = torch.tensor([[True, True, True, False]])
    out = cross_features(spec, cand, mask, user, bhv, bhv_mask)
    assert out.shape == (1, 4, 3)
    # distance buckets: 0 cells → 0, 1 cell → 1, hypot(2, 2) ≈ 2.83 → 2
    assert out[0, :3, 0].tolist() == [0, 1, 2]
    assert out[0, :3, 1].tolist() == [2 * 3 + 0, 2 * 3 + 2, 2 * 3 + 1]
    # behaviours per category: cat 0 → 2 (bucket 2: 2–3), cat 2 → 1 (bucket 1), cat 1 → 0
    assert out[0, :3, 2].tolist() == [2, 1, 0]
    assert out[0, 3].tolist() == [0, 0, 0]
    sizes = spec.vocab_sizes
    assert sizes["x_hour_category"] == 24 * 3 and sizes["x_distance"] == len(spec.distance_edges) + 1
