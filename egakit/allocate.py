"""``ega allocate``: one request → EGA-V1 allocation and payments, as JSON (docs/design.md §11).

    ega allocate --ckpt runs/demo/ckpt/payment/last.ckpt --world runs/demo/world --request req.json
    ega allocate --ckpt ... --world ... --request-id 123456

The request is either a JSON file::

    {"user_id": 10000017, "hour": 12, "geo_cell": 301, "loc": [11.2, 9.8],
     "candidate_ids": [1000003, 1000011, ...],      # or "candidate_set_id": 17 (the world's set)
     "day": 74, "request_id": 5}                    # optional: behaviours before that time; an id

or the id of a request in the world's Parquet (its candidate set in full). Features come from the
world's stores, as in serving (docs/design.md §2): the ads' categorical features and bids from the
:class:`~egakit.features.LocalAdStore`, the user's profile and behaviours from the
:class:`~egakit.features.RemoteUserStore`. Only the generator and the payment network run after
the encoder (:meth:`egakit.model.ega_v1.EGAV1.allocate`); memory is linear in N, so full
candidate sets of 10^5 ads run on CPU.

Prints ``{"request_id", "winners": [K ad ids], "payments": [K per-click prices], "bids": [K bids]}``.
Bad input (unknown ids or keys, a field of the wrong type or out of range, NaN or infinite numbers,
duplicate or too few candidates, a checkpoint whose modules are untrained, non-finite or built for
another world, non-finite prices) is an error naming the problem, with exit status 2; the output is
always valid JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pyarrow.compute as pc
import torch

from egakit.batch import RequestBatch
from egakit.checkpoint import CheckpointError, load_ega_v1
from egakit.errors import NonFiniteOutputError, WorldDataError
from egakit.features import CandidateSets, LocalAdStore, ParquetUserStore, RemoteUserStore
from egakit.model.ega_v1 import EGAV1
from egakit.sim import schema
from egakit.sim.io import iter_request_batches, load_world_meta
from egakit.sim.schema import HOURS_PER_DAY

REQUEST_FIELDS = ("user_id", "hour", "geo_cell")
#: Every key a request JSON may hold; any other key is an error (a typo must not be ignored).
OPTIONAL_REQUEST_FIELDS = ("candidate_ids", "candidate_set_id", "loc", "day", "request_id")
#: Ids are int64 in the world's Parquet.
MAX_ID = 2**63 - 1
#: Latest request day accepted (behaviours before ``day * 24 + hour`` must stay an int64 and a
#: plausible time: 10^6 days is ~2,700 years after the world's first day).
MAX_REQUEST_DAY = 10**6
_REQUEST_COLUMNS = ["request_id", "day", "hour", "user_id", "geo_cell", "loc_x", "loc_y", "candidate_set_id"]


def _is_int(value: Any) -> bool:
    """A JSON integer (not a bool, not a float such as 37.0)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _int_field(request: Mapping[str, Any], name: str, low: int, high: int) -> int:
    """``request[name]``, an integer in [low, high], else a :class:`RequestError`."""
    value = request[name]
    if not _is_int(value):
        raise RequestError(name, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise RequestError(name, f"must be in [{low}, {high}], got {value}")
    return value


def parse_request_json(text: str) -> Any:
    """Parse a request file's text; ``NaN`` / ``Infinity`` (accepted by Python's json) are refused."""

    def refuse(constant: str) -> Any:
        raise RequestError("<file>", f"{constant} is not valid JSON (numbers must be finite)")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as err:
        raise RequestError("<file>", f"not valid JSON: {err}") from err


class RequestError(ValueError):
    """A request that cannot be allocated: names the field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"request field {field!r}: {reason}")


# ----------------------------------------------------------------------------------------------
# Model


def load_allocation_model(ckpt_path: str | Path, world_meta: Optional[Mapping[str, Any]] = None) -> tuple[EGAV1, dict]:
    """The EGA-V1 of a phase checkpoint, in eval mode, and the checkpoint's metadata
    (:func:`egakit.checkpoint.load_ega_v1`): the modules its allocation and pricing read must have
    been trained (a payment-phase checkpoint; with ``model.allocation="gsp"`` the encoder is
    enough), and ``world_meta`` (world.json) must have the checkpoint's vocabularies and K."""
    return load_ega_v1(ckpt_path, world_meta=world_meta)


# ----------------------------------------------------------------------------------------------
# Requests


class RequestBuilder:
    """Builds one-request :class:`RequestBatch` es from the world's stores (docs/design.md §2)."""

    def __init__(
        self,
        world_dir: str | Path,
        *,
        max_behaviours: Optional[int] = None,
        ad_store: Optional[LocalAdStore] = None,
        user_store: Optional[RemoteUserStore] = None,
    ) -> None:
        self.world_dir = Path(world_dir)
        self.meta = load_world_meta(self.world_dir)
        self.K = int(self.meta["K"])
        self.ad_store = ad_store if ad_store is not None else LocalAdStore(self.world_dir)
        self.user_store = user_store if user_store is not None else ParquetUserStore(self.world_dir, max_behaviours)
        self._sets: Optional[CandidateSets] = None

    @property
    def candidate_sets(self) -> CandidateSets:
        if self._sets is None:
            self._sets = CandidateSets(self.world_dir, self.ad_store)
        return self._sets

    def _check_context(self, hour: int, geo_cell: int) -> None:
        if not 0 <= hour < HOURS_PER_DAY:
            raise RequestError("hour", f"must be in [0, {HOURS_PER_DAY}), got {hour}")
        cells = int(self.meta["vocab"]["geo_cell"])
        if not 0 <= geo_cell < cells:
            raise RequestError("geo_cell", f"must be in [0, {cells}), got {geo_cell}")

    def build(
        self,
        *,
        user_id: int,
        hour: int,
        geo_cell: int,
        candidate_ids: Sequence[int],
        loc: Sequence[float] = (0.0, 0.0),
        day: Optional[int] = None,
        request_id: int = -1,
        candidate_set_id: int = -1,
    ) -> RequestBatch:
        """A batch of one request; candidates in the given order."""
        self._check_context(int(hour), int(geo_cell))
        ids = np.asarray(candidate_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise RequestError("candidate_ids", "empty candidate set")
        if np.unique(ids).size != ids.size:
            _, first = np.unique(ids, return_index=True)
            dup = int(ids[np.setdiff1d(np.arange(ids.size), first)[0]])
            raise RequestError("candidate_ids", f"ad {dup} appears more than once")
        if ids.size < self.K:
            raise RequestError("candidate_ids", f"{ids.size} candidates, fewer than the K={self.K} slots")
        if len(loc) != 2:
            raise RequestError("loc", f"must be [x, y], got {list(loc)}")
        rows = self.ad_store.rows(ids, field="candidate_ids")  # unknown ids → WorldDataError
        as_of = None if day is None else np.array([int(day) * HOURS_PER_DAY + int(hour)])
        user = self.user_store.get(np.array([int(user_id)]), as_of)
        context = np.array([int(hour) if name == "hour" else int(geo_cell) for name in schema.CONTEXT_CATEGORICAL])
        n, k = ids.size, self.K
        length = max(1, int(user.bhv_len[0]))
        bhv = np.zeros((1, length, len(schema.BEHAVIOUR_CATEGORICAL)), dtype=np.int64)
        bhv[0, : user.bhv_len[0]] = user.sequence(0)
        cand_rows = torch.from_numpy(np.asarray(rows, dtype=np.int64)).unsqueeze(0)
        return RequestBatch(
            request_id=torch.tensor([int(request_id)]),
            user_id=torch.tensor([int(user_id)]),
            candidate_set_id=torch.tensor([int(candidate_set_id)]),
            loc=torch.tensor([[float(loc[0]), float(loc[1])]], dtype=torch.float32),
            user_feats=torch.from_numpy(np.concatenate([user.profile[0], context])).unsqueeze(0),
            bhv_feats=torch.from_numpy(bhv),
            bhv_mask=torch.arange(length).unsqueeze(0) < int(user.bhv_len[0]),
            cand_ids=torch.from_numpy(ids).unsqueeze(0),
            cand_rows=cand_rows,
            cand_mask=torch.ones(1, n, dtype=torch.bool),
            bids=torch.from_numpy(self.ad_store.bids(rows).astype(np.float32)).unsqueeze(0),
            labels=torch.zeros(1, n),
            label_mask=torch.zeros(1, n, dtype=torch.bool),
            exposed_slot=torch.full((1, n), -1, dtype=torch.long),
            exposed_index=torch.zeros(1, k, dtype=torch.long),
            exposed_clicks=torch.zeros(1, k),
            cand_feats=self.ad_store.gather(cand_rows),
        )

    def from_json(self, request: Mapping[str, Any]) -> RequestBatch:
        """A request given as a JSON object (module docstring), validated strictly: every field has
        its type (integers are JSON integers, never floats or strings), its range and finite
        values; unknown keys are refused. Any problem is a :class:`RequestError`."""
        if not isinstance(request, Mapping):
            raise RequestError("<request>", f"expected a JSON object, got {type(request).__name__}")
        unknown = sorted(str(k) for k in request if k not in REQUEST_FIELDS + OPTIONAL_REQUEST_FIELDS)
        if unknown:
            raise RequestError(
                unknown[0], f"unknown key(s) {unknown}; a request holds {list(REQUEST_FIELDS + OPTIONAL_REQUEST_FIELDS)}"
            )
        for name in REQUEST_FIELDS:
            if name not in request:
                raise RequestError(name, "missing")
        user_id = _int_field(request, "user_id", 0, MAX_ID)
        hour = _int_field(request, "hour", 0, HOURS_PER_DAY - 1)
        geo_cell = _int_field(request, "geo_cell", 0, int(self.meta["vocab"]["geo_cell"]) - 1)
        day = None if request.get("day") is None else _int_field(request, "day", 0, MAX_REQUEST_DAY)
        request_id = -1 if "request_id" not in request else _int_field(request, "request_id", 0, MAX_ID)
        set_id = -1 if "candidate_set_id" not in request else _int_field(request, "candidate_set_id", 0, MAX_ID)
        if "candidate_ids" in request:
            ids = request["candidate_ids"]
            if not isinstance(ids, list) or not all(_is_int(x) and 0 <= x <= MAX_ID for x in ids):
                raise RequestError("candidate_ids", f"must be a list of integer ad ids in [0, {MAX_ID}]")
        elif set_id >= 0:
            try:
                ids = self.candidate_sets.ids(set_id)
            except (WorldDataError, IndexError, KeyError, ValueError) as err:
                raise RequestError("candidate_set_id", f"no candidate set {set_id} in {self.world_dir}: {err}") from err
        else:
            raise RequestError("candidate_ids", "missing (give candidate_ids or candidate_set_id)")
        loc = request.get("loc", [0.0, 0.0])
        if (
            not isinstance(loc, list)
            or len(loc) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in loc)
        ):
            raise RequestError("loc", f"must be [x, y], two finite numbers, got {loc!r}")
        try:
            return self.build(
                user_id=user_id, hour=hour, geo_cell=geo_cell, candidate_ids=ids, loc=loc, day=day,
                request_id=request_id, candidate_set_id=set_id,
            )
        except WorldDataError as err:  # an id the world does not know
            raise RequestError(err.field or "<request>", err.reason) from err

    def from_parquet(self, request_id: int) -> RequestBatch:
        """The world's request ``request_id`` (any split), with its whole candidate set."""
        for split in schema.SPLITS:
            for table in iter_request_batches(self.world_dir, split, _REQUEST_COLUMNS):
                hit = table.filter(pc.equal(table.column("request_id"), int(request_id)))
                if hit.num_rows:
                    row = {name: hit.column(name)[0].as_py() for name in _REQUEST_COLUMNS}
                    return self.build(
                        user_id=row["user_id"],
                        hour=row["hour"],
                        geo_cell=row["geo_cell"],
                        candidate_ids=self.candidate_sets.ids(int(row["candidate_set_id"])),
                        loc=(row["loc_x"], row["loc_y"]),
                        day=row["day"],
                        request_id=row["request_id"],
                        candidate_set_id=row["candidate_set_id"],
                    )
        raise RequestError("request_id", f"no request {request_id} in {self.world_dir}")


# ----------------------------------------------------------------------------------------------
# Allocation


def allocate_request(model: EGAV1, batch: RequestBatch) -> dict[str, Any]:
    """Run generator + payment network on a one-request batch → the JSON-ready result."""
    with torch.no_grad():
        winners, payments = model.allocate(batch)
    positions = (batch.cand_ids[0].unsqueeze(0) == winners[0].unsqueeze(1)).to(torch.int8).argmax(1)  # (K,)
    bids = batch.bids[0, positions]
    if not bool(torch.isfinite(payments).all()):
        raise NonFiniteOutputError(f"the model priced request {int(batch.request_id[0])} at {payments[0].tolist()}")
    return {
        "request_id": int(batch.request_id[0]),
        "winners": [int(x) for x in winners[0].tolist()],
        "payments": [float(x) for x in payments[0].tolist()],
        "bids": [float(x) for x in bids.tolist()],
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ega allocate", description="Allocate K ad slots and price them for one request (EGA-V1)."
    )
    parser.add_argument("--ckpt", required=True, help="EGA-V1 checkpoint (the payment phase's)")
    parser.add_argument("--world", required=True, help="world directory (its stores serve the features)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--request", help="request JSON file (see the module docstring)")
    source.add_argument("--request-id", type=int, help="id of a request in the world's Parquet")
    parser.add_argument(
        "--max-behaviours", type=int, default=None,
        help="behaviours served per user (default: what the checkpoint was trained with, else the world's)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser


def cmd_allocate(argv: Sequence[str]) -> int:
    """Entry point of ``ega allocate`` (register as ``EXTRA_COMMANDS["allocate"]``)."""
    args = _parser().parse_args(list(argv))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        world_meta = load_world_meta(args.world)
        model, meta = load_allocation_model(args.ckpt, world_meta)
        max_behaviours = args.max_behaviours if args.max_behaviours is not None else meta.get("max_behaviours")
        builder = RequestBuilder(args.world, max_behaviours=max_behaviours)
        if args.request is not None:
            try:
                text = Path(args.request).read_text()
            except (OSError, UnicodeDecodeError) as err:
                raise RequestError("<file>", f"cannot read {args.request}: {err}") from err
            batch = builder.from_json(parse_request_json(text))
        else:
            batch = builder.from_parquet(args.request_id)
        result = allocate_request(model, batch)
    except (CheckpointError, WorldDataError, RequestError, NonFiniteOutputError, ValueError) as err:
        print(f"ega allocate: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, allow_nan=False))
    return 0


if __name__ == "__main__":  # python -m egakit.allocate ...
    sys.exit(cmd_allocate(sys.argv[1:]))
