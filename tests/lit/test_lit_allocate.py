"""`ega allocate` (egakit.allocate.cmd_allocate) on the tiny world with the chained payment
checkpoint: JSON in, JSON out, K distinct winners from the candidates, IR prices, clear errors."""
from __future__ import annotations

import json

import pytest

from egakit.allocate import cmd_allocate
from egakit.features import CandidateSets, LocalAdStore
from egakit.sim.io import read_requests


def _run(capsys, *argv) -> tuple[int, dict | None, str]:
    code = cmd_allocate([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


@pytest.fixture(scope="module")
def request_row(lit_world):
    table = read_requests(lit_world, "test", ["request_id", "day", "hour", "user_id", "geo_cell", "loc_x", "loc_y", "candidate_set_id"])
    return {name: table.column(name)[0].as_py() for name in table.column_names}


def _check(result, candidates, store, K=5):
    assert set(result) == {"request_id", "winners", "payments", "bids"}
    winners, payments, bids = result["winners"], result["payments"], result["bids"]
    assert len(winners) == len(set(winners)) == K
    assert set(winners) <= set(int(c) for c in candidates)
    assert bids == pytest.approx(store.bids(store.rows(winners)).tolist())
    assert all(0.0 <= p <= b for p, b in zip(payments, bids))


def test_allocate_a_json_request(lit_world, chain, request_row, tmp_path, capsys):
    store = LocalAdStore(lit_world)
    candidates = CandidateSets(lit_world, store).ids(request_row["candidate_set_id"]).tolist()
    req = tmp_path / "req.json"
    req.write_text(json.dumps({
        "user_id": request_row["user_id"], "hour": request_row["hour"], "geo_cell": request_row["geo_cell"],
        "loc": [request_row["loc_x"], request_row["loc_y"]], "candidate_ids": candidates, "request_id": 42,
    }))
    code, result, err = _run(capsys, "--ckpt", chain["payment"], "--world", lit_world, "--request", req)
    assert code == 0, err
    assert result["request_id"] == 42
    _check(result, candidates, store)


def test_allocate_a_request_id_from_the_world(lit_world, chain, request_row, capsys):
    store = LocalAdStore(lit_world)
    candidates = CandidateSets(lit_world, store).ids(request_row["candidate_set_id"])
    code, result, err = _run(
        capsys, "--ckpt", chain["payment"], "--world", lit_world, "--request-id", request_row["request_id"]
    )
    assert code == 0, err
    assert result["request_id"] == request_row["request_id"]
    _check(result, candidates, store)


def test_allocate_refuses_bad_input_with_the_reason(lit_world, chain, request_row, tmp_path, capsys):
    req = tmp_path / "req.json"
    base = {"user_id": request_row["user_id"], "hour": request_row["hour"], "geo_cell": request_row["geo_cell"]}
    cases = [
        ({**base, "candidate_ids": [1, 2, 3, 4, 5, 6]}, "unknown id 1"),
        ({**base, "candidate_set_id": request_row["candidate_set_id"], "hour": 24}, "'hour'"),
        ({"hour": 3, "geo_cell": 0, "candidate_ids": []}, "'user_id': missing"),
    ]
    for request, message in cases:
        req.write_text(json.dumps(request))
        code, _, err = _run(capsys, "--ckpt", chain["payment"], "--world", lit_world, "--request", req)
        assert code == 2 and message in err, err
    req.write_text(json.dumps({**base, "candidate_set_id": request_row["candidate_set_id"]}))
    code, _, err = _run(capsys, "--ckpt", chain["pretrain"], "--world", lit_world, "--request", req)
    assert code == 2 and "model.generator" in err and "rlaf phase" in err, err  # critical prices need no payment network
