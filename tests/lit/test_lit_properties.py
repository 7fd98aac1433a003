"""Property tests (hypothesis) of EGA-V1 allocation with the chained tiny payment checkpoint, and
of `ega allocate`'s request validation: fuzzed requests end in a RequestError or a batch, never
another exception; strict validation of the inputs that used to be converted silently."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egakit.allocate import MAX_ID, RequestBuilder, RequestError, allocate_request, load_allocation_model
from egakit.batch import RequestBatch
from egakit.cli import main
from egakit.sim.io import load_world_meta, read_requests

PROPERTY_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
#: Extra masked columns appended to test padding invariance.
PAD_COLUMNS = 3


@pytest.fixture(scope="module")
def served(lit_world, chain):
    model, meta = load_allocation_model(chain["payment"], load_world_meta(lit_world))
    builder = RequestBuilder(lit_world, max_behaviours=meta.get("max_behaviours"))
    requests = read_requests(lit_world, "test", ["user_id", "hour", "geo_cell", "candidate_set_id"]).to_pylist()[:16]
    return model, builder, requests


def _request(builder: RequestBuilder, row: dict, data) -> RequestBatch:
    """A world request with a random subset (>= K) of its candidate set, in random order."""
    ids = builder.candidate_sets.ids(row["candidate_set_id"]).tolist()
    size = data.draw(st.integers(builder.K, min(len(ids), 24)), label="candidates")
    chosen = data.draw(st.permutations(ids), label="order")[:size]
    return builder.build(user_id=row["user_id"], hour=row["hour"], geo_cell=row["geo_cell"], candidate_ids=chosen)


def _pad(batch: RequestBatch, extra: int) -> RequestBatch:
    """``batch`` with ``extra`` masked candidate columns appended (what collation of a longer request adds)."""
    def cat(t: torch.Tensor, value) -> torch.Tensor:
        pad = torch.full((t.shape[0], extra, *t.shape[2:]), value, dtype=t.dtype)
        return torch.cat([t, pad], dim=1)

    return batch.replace(
        cand_ids=cat(batch.cand_ids, -1), cand_rows=cat(batch.cand_rows, 0), cand_mask=cat(batch.cand_mask, False),
        bids=cat(batch.bids, 0.0), labels=cat(batch.labels, 0.0), label_mask=cat(batch.label_mask, False),
        exposed_slot=cat(batch.exposed_slot, -1), cand_feats=cat(batch.cand_feats, 0),
    )


def _permute(batch: RequestBatch, perm: torch.Tensor) -> RequestBatch:
    return batch.replace(
        cand_ids=batch.cand_ids[:, perm], cand_rows=batch.cand_rows[:, perm], cand_mask=batch.cand_mask[:, perm],
        bids=batch.bids[:, perm], labels=batch.labels[:, perm], label_mask=batch.label_mask[:, perm],
        exposed_slot=batch.exposed_slot[:, perm], cand_feats=batch.cand_feats[:, perm],
    )


@PROPERTY_SETTINGS
@given(data=st.data())
def test_allocation_is_invariant_to_order_and_padding_and_prices_are_individually_rational(served, data):
    model, builder, requests = served
    batch = _request(builder, data.draw(st.sampled_from(requests), label="request"), data)
    base = allocate_request(model, batch)
    assert all(0.0 <= p <= b + 1e-6 for p, b in zip(base["payments"], base["bids"]))  # 0 <= p <= b
    n = batch.cand_ids.shape[1]
    perm = torch.tensor(data.draw(st.permutations(range(n)), label="permutation"))
    for variant in (_permute(batch, perm), _pad(batch, PAD_COLUMNS)):
        other = allocate_request(model, variant)
        assert other["winners"] == base["winners"]
        assert other["payments"] == pytest.approx(base["payments"], rel=1e-4, abs=1e-6)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_an_ads_own_allocation_score_is_monotone_in_its_bid(served, data):
    model, builder, requests = served
    batch = _request(builder, data.draw(st.sampled_from(requests), label="request"), data)
    n = batch.cand_ids.shape[1]
    ad = data.draw(st.integers(0, n - 1), label="ad")
    factors = sorted(data.draw(st.lists(st.floats(0.0, 10.0), min_size=2, max_size=5), label="bid factors"))
    with torch.no_grad():
        own = []
        for factor in factors:
            bids = batch.bids.clone()
            bids[0, ad] *= factor
            changed = batch.replace(bids=bids)
            enc = model.encode(changed)
            t = model.slot_tokens(enc)
            own.append(model.generator.scores(enc.h_ad, t, enc.q_hat, bids)[0, ad])  # (K,)
    for low, high in zip(own, own[1:]):
        assert bool((high >= low - 1e-5).all())


# ---------------------------------------------------------------------------------------- requests

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=4)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                           max_leaves=12)
KEYS = ("user_id", "hour", "geo_cell", "loc", "candidate_ids", "candidate_set_id", "day", "request_id", "bids", "K")


@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzzed_requests_end_in_a_request_error_or_a_batch(served, data):
    _, builder, requests = served
    row = data.draw(st.sampled_from(requests), label="row")
    request = {"user_id": row["user_id"], "hour": row["hour"], "geo_cell": row["geo_cell"],
               "candidate_set_id": row["candidate_set_id"]}
    for key in data.draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True), label="fuzzed keys"):
        if data.draw(st.booleans(), label=f"drop {key}"):
            request.pop(key, None)
        else:
            request[key] = data.draw(JSON_VALUES, label=key)
    try:
        batch = builder.from_json(request)
    except RequestError:
        return
    assert isinstance(batch, RequestBatch)


@pytest.mark.parametrize("change, field", [
    ({"day": 1e30}, "day"), ({"day": float("inf")}, "day"), ({"day": 37.9}, "day"), ({"day": 10**30}, "day"),
    ({"candidate_set_id": "59"}, "candidate_set_id"), ({"loc": [float("nan"), float("inf")]}, "loc"),
    ({"bids": [1.0]}, "bids"), ({"K": 3}, "K"), ({"candidate_ids": [2**64]}, "candidate_ids"),
    ({"candidate_ids": [MAX_ID]}, "candidate_ids"), ({"user_id": True}, "user_id"), ({"hour": 3.0}, "hour"),
])
def test_bad_request_fields_are_named_in_one_message(lit_world, chain, served, tmp_path, capsys, change, field):
    _, _, requests = served
    row = requests[0]
    request = {"user_id": row["user_id"], "hour": row["hour"], "geo_cell": row["geo_cell"],
               "candidate_set_id": row["candidate_set_id"], **change}
    path = tmp_path / "req.json"
    path.write_text(json.dumps(request))  # NaN / Infinity written as Python's json writes them
    code = main(["allocate", "--ckpt", str(chain["payment"]), "--world", str(lit_world), "--request", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"'{field}'" in err or (field in ("day", "loc") and "'<file>'" in err and "finite" in err), err
