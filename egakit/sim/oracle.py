"""The oracle: scores any allocation + payment on the world's hidden truth (docs/design.md §1, §6).

    oracle = Oracle.from_world("worlds/tiny")
    ctr = oracle.slot_ctr(batch, winners_ids)            # (B, K) true pCTR of the list
    out = oracle.outcome(batch, winners_ids, prices)     # revenue, utility, welfare

It holds the truth in memory (ad latents, quality, values, creatives, coordinates by ad row;
user interests and hour sensitivities; the click-model constants) and, per candidate set, its
ads and their crowding (rebuilt from the geometry and the supply state with the generator's own
code, :mod:`egakit.sim.supply` and :func:`crowding`, cached LRU).
Everything is batched torch on the oracle's device and memory-linear in N.

Batches come from :mod:`egakit.batch` (``RequestBatch``): the oracle uses ``user_id``, ``loc``,
the ``hour`` column of ``user_feats`` (order USER_CATEGORICAL + CONTEXT_CATEGORICAL) and
``candidate_set_id``. Ids are ad ids (−1 = padding / empty slot), never store rows.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from egakit.batch import RequestBatch
from egakit.errors import WorldDataError
from egakit.sim import io
from egakit.sim.click_model import ClickTruth, TruthTables, crowding
from egakit.sim.geo import CityGrid, PointIndex
from egakit.sim.schema import CONTEXT_CATEGORICAL, USER_CATEGORICAL
from egakit.sim.supply import SupplyStates

HOUR_COLUMN = (USER_CATEGORICAL + CONTEXT_CATEGORICAL).index("hour")
DEFAULT_CACHED_CANDIDATES = 4_000_000  # candidate-set cache budget (ids + crowding: 12 bytes each)
BATCH_PATH = "<RequestBatch>"  # the "file" named by errors about in-memory batches


@dataclass
class Context:
    """Request context as the truth needs it: user rows, hour, location, candidate set (all (B,))."""

    user_rows: Tensor  # (B,) int64 row in the user table
    hour: Tensor  # (B,) int64 0..23
    loc: Tensor  # (B, 2) float32
    set_ids: Tensor  # (B,) int64 candidate_set_id

    def __len__(self) -> int:
        return int(self.user_rows.shape[0])

    def select(self, idx: Tensor) -> "Context":
        return Context(self.user_rows[idx], self.hour[idx], self.loc[idx], self.set_ids[idx])


@dataclass
class Outcome:
    """True outcome of K-slot allocations with per-click prices (V1 Eq. 1–2). Shapes (B, K) / (B,).

    ctr: true pCTR per slot (0 on empty slots); values: true click values v; prices: per-click
    prices as given; expected_clicks = Σ_k ctr; revenue = Σ_k p·ctr (Eq. 1); utility = (v − p)·ctr
    per slot (Eq. 2); welfare = Σ_k v·ctr (advertisers' value created).
    """

    ctr: Tensor
    values: Tensor
    prices: Tensor
    expected_clicks: Tensor
    revenue: Tensor
    utility: Tensor
    welfare: Tensor


class Oracle:
    """Ground-truth scorer of a world. Build with :meth:`from_world`."""

    def __init__(
        self,
        tables: TruthTables,
        ad_ids: np.ndarray,
        user_ids: np.ndarray,
        value: np.ndarray,
        grid: CityGrid,
        ad_index: PointIndex,
        category: np.ndarray,
        quality: np.ndarray,
        set_cells: np.ndarray,
        *,
        device="cpu",
        max_cached_candidates: int = DEFAULT_CACHED_CANDIDATES,
        world_dir: Optional[Path] = None,
        supply: Optional[SupplyStates] = None,
    ) -> None:
        """``category``, ``quality``: (n_ads,) per ad row, what crowding counts; ``set_cells``: (S,)
        geo cell of every candidate set; ``supply`` thins each cell's radius set to its supply state
        (None: the whole radius set)."""
        self.tables = tables
        self.device = torch.device(device)
        self.world_dir = world_dir
        self.grid = grid
        self._ad_ids_np = ad_ids
        self.ad_ids = torch.tensor(np.asarray(ad_ids), dtype=torch.int64, device=self.device)
        self.user_ids = torch.tensor(np.asarray(user_ids), dtype=torch.int64, device=self.device)
        self.value = torch.tensor(np.asarray(value), dtype=torch.float32, device=self.device)
        self._ad_index = ad_index
        self._category = np.asarray(category, dtype=np.int64)
        self._quality = quality
        self.set_cells = np.asarray(set_cells, dtype=np.int64)
        self._supply = supply
        self.max_cached_candidates = max_cached_candidates
        self._sets: OrderedDict[int, tuple[Tensor, Tensor]] = OrderedDict()
        self._cached = 0  # candidates held in the set cache

    # ------------------------------------------------------------------------------------------
    # Construction

    @classmethod
    def from_world(cls, world_dir, *, device="cpu", max_cached_candidates: int = DEFAULT_CACHED_CANDIDATES) -> "Oracle":
        """Load the truth of the world in ``world_dir`` (validated reads)."""
        world_dir = Path(world_dir)
        meta = io.load_world_meta(world_dir)
        params_path = world_dir / "truth" / "params.json"
        try:
            truth = ClickTruth.load(params_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WorldDataError(params_path, None, None, f"unreadable click-model parameters: {exc}") from exc
        ads = io.read_table(world_dir, "ads", ["ad_id", "category", "n_creatives"])
        tads = io.read_table(world_dir, "truth_ads")
        tusers = io.read_table(world_dir, "truth_users", ["user_id", "interest", "hour_sensitivity"])
        sets = io.read_table(world_dir, "candidate_sets", ["candidate_set_id", "geo_cell"])
        ad_ids = ads.column("ad_id").to_numpy()
        tad_path = io.table_path(world_dir, "truth_ads")
        if not np.array_equal(ad_ids, tads.column("ad_id").to_numpy()):
            raise WorldDataError(tad_path, "ad_id", None, "truth ads do not match ads.parquet row for row")
        set_ids = sets.column("candidate_set_id").to_numpy()
        if not np.array_equal(set_ids, np.arange(len(set_ids))):
            raise WorldDataError(io.table_path(world_dir, "candidate_sets"), "candidate_set_id", None,
                                 "candidate_set_id must equal the row number")
        latent = _matrix(tads.column("latent"), tad_path, "latent")
        n_creatives = ads.column("n_creatives").to_numpy().astype(np.int64)
        lengths = pc.list_value_length(tads.column("creative_attr").combine_chunks()).to_numpy()
        bad = np.flatnonzero(lengths != n_creatives)
        if bad.size:
            raise WorldDataError(tad_path, "creative_attr", int(bad[0]), "length differs from ads.n_creatives")
        creative_attr = _padded(tads.column("creative_attr"), int(n_creatives.max()))
        x = tads.column("x").to_numpy()
        y = tads.column("y").to_numpy()
        quality = tads.column("quality").to_numpy()
        city = meta["city"]
        grid = CityGrid(int(city["grid"]), float(city["city_size"]), float(city["radius"]))
        tables = TruthTables.from_numpy(
            truth, device=device, latent=latent, quality=quality, category=ads.column("category").to_numpy(),
            creative_attr=creative_attr, creative_count=n_creatives, xy=np.stack([x, y], axis=1),
            interest=_matrix(tusers.column("interest"), io.table_path(world_dir, "truth_users"), "interest"),
            sensitivity=tusers.column("hour_sensitivity").to_numpy(),
        )
        return cls(
            tables, ad_ids, tusers.column("user_id").to_numpy(), tads.column("value").to_numpy(), grid,
            PointIndex(grid, x, y), ads.column("category").to_numpy(), quality,
            sets.column("geo_cell").to_numpy(), device=device, max_cached_candidates=max_cached_candidates, world_dir=world_dir,
            supply=SupplyStates.from_json(meta["supply"]),
        )

    @property
    def truth(self) -> ClickTruth:
        return self.tables.truth

    # ------------------------------------------------------------------------------------------
    # Ids and contexts

    def ad_rows(self, ad_ids: Tensor, *, field: str = "ad_ids") -> tuple[Tensor, Tensor]:
        """Ad ids (any shape, −1 = none) -> (rows, valid); rows are 0 where invalid.
        Unknown ids raise :class:`WorldDataError` naming ``field`` and the batch row."""
        ad_ids = ad_ids.to(self.device, torch.int64).contiguous()
        valid = ad_ids >= 0
        rows = torch.searchsorted(self.ad_ids, ad_ids).clamp(max=len(self.ad_ids) - 1)
        unknown = valid & (self.ad_ids[rows] != ad_ids)
        if bool(unknown.any()):
            idx = torch.nonzero(unknown)[0]
            raise WorldDataError(BATCH_PATH, field, int(idx[0]), f"unknown ad id {int(ad_ids[tuple(idx)])}")
        return torch.where(valid, rows, torch.zeros_like(rows)), valid

    def context(self, user_ids: Tensor, hour: Tensor, loc: Tensor, candidate_set_ids: Tensor) -> Context:
        """Context from ids: user_ids, hour, candidate_set_ids (B,); loc (B, 2)."""
        user_ids = torch.as_tensor(user_ids, device=self.device).to(torch.int64).reshape(-1).contiguous()
        rows = torch.searchsorted(self.user_ids, user_ids).clamp(max=len(self.user_ids) - 1)
        unknown = self.user_ids[rows] != user_ids
        if bool(unknown.any()):
            b = int(torch.nonzero(unknown)[0, 0])
            raise WorldDataError(BATCH_PATH, "user_id", b, f"unknown user id {int(user_ids[b])}")
        hour = torch.as_tensor(hour, device=self.device).to(torch.int64).reshape(-1)
        bad = (hour < 0) | (hour > 23)
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise WorldDataError(BATCH_PATH, "hour", b, f"hour must be in [0, 23], got {int(hour[b])}")
        sets = torch.as_tensor(candidate_set_ids, device=self.device).to(torch.int64).reshape(-1)
        bad = (sets < 0) | (sets >= len(self.set_cells))
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise WorldDataError(BATCH_PATH, "candidate_set_id", b, f"unknown candidate set {int(sets[b])}")
        loc = torch.as_tensor(loc, device=self.device).to(torch.float32).reshape(-1, 2)
        return Context(rows, hour, loc, sets)

    def context_from_batch(self, batch: RequestBatch) -> Context:
        return self.context(batch.user_id, batch.user_feats[:, HOUR_COLUMN], batch.loc, batch.candidate_set_id)

    def context_from_requests(self, table: pa.Table) -> Context:
        """Context of rows of a requests table (from :func:`egakit.sim.io.read_requests`)."""
        col = lambda name: torch.from_numpy(table.column(name).to_numpy().astype(np.int64))  # noqa: E731
        loc = np.stack([table.column("loc_x").to_numpy(), table.column("loc_y").to_numpy()], axis=1)
        return self.context(col("user_id"), col("hour"), torch.from_numpy(loc), col("candidate_set_id"))

    # ------------------------------------------------------------------------------------------
    # Candidate sets and crowding

    def candidate_set(self, set_id: int) -> tuple[Tensor, Tensor]:
        """(sorted ad rows (n,), crowding (n,)) of a candidate set, LRU-cached on the device within
        ``max_cached_candidates``."""
        set_id = int(set_id)
        hit = self._sets.get(set_id)
        if hit is not None:
            self._sets.move_to_end(set_id)
            return hit
        rows = self._ad_index.cell_set(int(self.set_cells[set_id]))
        if self._supply is not None:
            rows = self._supply.rows(rows, self._category, set_id)
        crowd = crowding(self._category[rows], self._quality[rows], self.truth.params.strong_quality)
        entry = (torch.from_numpy(rows).to(self.device), torch.from_numpy(crowd).to(self.device))
        self._sets[set_id] = entry
        self._cached += len(rows)
        while self._cached > self.max_cached_candidates and len(self._sets) > 1:
            _, (old, _) = self._sets.popitem(last=False)
            self._cached -= len(old)
        return entry

    @property
    def supply_states_per_cell(self) -> int:
        """Candidate sets per geo cell (set id = cell index · states + state)."""
        return 1 if self._supply is None else self._supply.config.states_per_cell

    def candidate_set_ids(self, set_id: int) -> Tensor:
        """Sorted ad ids of a candidate set (as stored in candidate_sets.parquet)."""
        return self.ad_ids[self.candidate_set(set_id)[0]]

    def crowding_of(self, ctx: Context, rows: Tensor, valid: Tensor, field: str = "ad_ids") -> Tensor:
        """(B, N) raw crowding of ads ``rows`` in each request's candidate set; 0 where invalid.
        An ad outside its request's candidate set raises :class:`WorldDataError`."""
        out = torch.zeros(rows.shape, dtype=torch.float32, device=self.device)
        for s in torch.unique(ctx.set_ids).tolist():
            sel = torch.nonzero(ctx.set_ids == s).squeeze(1)
            set_rows, crowd = self.candidate_set(s)
            r = rows[sel]
            pos = torch.searchsorted(set_rows, r).clamp(max=len(set_rows) - 1)
            missing = valid[sel] & (set_rows[pos] != r)
            if bool(missing.any()):
                i = torch.nonzero(missing)[0]
                b = int(sel[i[0]])
                raise WorldDataError(
                    BATCH_PATH, field, b,
                    f"ad id {int(self.ad_ids[r[tuple(i)]])} is not in the request's candidate set {s}",
                )
            out[sel] = torch.where(valid[sel], crowd[pos], torch.zeros_like(crowd[pos]))
        return out

    # ------------------------------------------------------------------------------------------
    # Truth on contexts (ids in, tensors out)

    def terms(self, ctx: Context, ad_ids: Tensor) -> dict[str, Tensor]:
        """Additive logit terms of ads ``ad_ids`` (B, N) for each request (see click_model), plus
        ``valid``. Used by :mod:`egakit.sim.stats` to measure each effect."""
        rows, valid = self.ad_rows(ad_ids)
        crowd = self.crowding_of(ctx, rows, valid)
        terms = self.tables.terms(ctx.user_rows, ctx.hour, ctx.loc, rows, crowd)
        terms["valid"] = valid
        terms["rows"] = rows
        return terms

    def slot_free_ctr(self, ctx: Context, ad_ids: Tensor, creatives: Optional[Tensor] = None) -> Tensor:
        """(B, N) slot-free CTR (posbias 1, no list externality; expected over a random creative
        unless ``creatives`` (B, N) is given); 0 on padding (−1)."""
        rows, valid = self.ad_rows(ad_ids)
        crowd = self.crowding_of(ctx, rows, valid)
        creatives = self._check_creatives(creatives, rows, valid)
        ctr = self.tables.slot_free_ctr(ctx.user_rows, ctx.hour, ctx.loc, rows, crowd, creatives)
        return ctr * valid

    def list_ctr(self, ctx: Context, ad_ids: Tensor, creatives: Optional[Tensor] = None) -> Tensor:
        """(B, K) true CTR of the lists ``ad_ids`` (B, K) in slot order; −1 = empty slot -> 0."""
        rows, valid = self.ad_rows(ad_ids, field="winners_ids")
        ids = torch.where(valid, ad_ids.to(self.device), torch.full_like(rows, -1))
        srt = ids.sort(dim=-1).values
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if bool(dup.any()):
            b, k = torch.nonzero(dup)[0].tolist()
            raise WorldDataError(BATCH_PATH, "winners_ids", b, f"ad id {int(srt[b, k])} appears twice in the list")
        crowd = self.crowding_of(ctx, rows, valid, field="winners_ids")
        creatives = self._check_creatives(creatives, rows, valid)
        return self.tables.list_ctr(ctx.user_rows, ctx.hour, ctx.loc, rows, crowd, valid, creatives)

    def _check_creatives(self, creatives: Optional[Tensor], rows: Tensor, valid: Tensor) -> Optional[Tensor]:
        if creatives is None:
            return None
        creatives = creatives.to(self.device, torch.int64)
        if creatives.shape != rows.shape:
            raise ValueError(f"creatives must have shape {tuple(rows.shape)}, got {tuple(creatives.shape)}")
        bad = valid & ((creatives < 0) | (creatives >= self.tables.creative_count[rows]))
        if bool(bad.any()):
            i = torch.nonzero(bad)[0]
            raise WorldDataError(
                BATCH_PATH, "creatives", int(i[0]),
                f"creative {int(creatives[tuple(i)])} out of range for an ad with "
                f"{int(self.tables.creative_count[rows[tuple(i)]])} creatives",
            )
        return creatives

    def outcome_from_context(
        self, ctx: Context, winners_ids: Tensor, prices: Tensor, creatives: Optional[Tensor] = None
    ) -> Outcome:
        ctr = self.list_ctr(ctx, winners_ids, creatives)
        prices = prices.to(self.device, torch.float32)
        if prices.shape != ctr.shape:
            raise ValueError(f"prices must have shape {tuple(ctr.shape)}, got {tuple(prices.shape)}")
        bad = ~torch.isfinite(prices)
        if bool(bad.any()):
            raise WorldDataError(BATCH_PATH, "prices", int(torch.nonzero(bad)[0, 0]), "price must be finite")
        filled = winners_ids.to(self.device) >= 0
        prices = prices * filled
        values = self.values(winners_ids)
        return Outcome(
            ctr=ctr,
            values=values,
            prices=prices,
            expected_clicks=ctr.sum(-1),
            revenue=(prices * ctr).sum(-1),
            utility=(values - prices) * ctr,
            welfare=(values * ctr).sum(-1),
        )

    # ------------------------------------------------------------------------------------------
    # RequestBatch API

    def slot_ctr(self, batch: RequestBatch, winners_ids: Tensor, creatives: Optional[Tensor] = None) -> Tensor:
        """(B, K) true pCTR of the lists ``winners_ids`` (B, K) ad ids (−1 = empty slot -> 0) for
        the requests of ``batch``; creatives (B, K) optional (default: expectation over a random
        creative, as the logging policy shows)."""
        return self.list_ctr(self.context_from_batch(batch), winners_ids, creatives)

    def pointwise_ctr(self, batch: RequestBatch) -> Tensor:
        """(B, N) slot-free true CTR of every candidate of ``batch`` (posbias 1, no list
        externality), 0 on padding."""
        ids = torch.where(batch.cand_mask, batch.cand_ids, torch.full_like(batch.cand_ids, -1))
        return self.slot_free_ctr(self.context_from_batch(batch), ids)

    def sampled_clicks(self, batch: RequestBatch, seed: int) -> Tensor:
        """(B, N) float clicks drawn from the slot-free true CTR of *every* candidate of ``batch``
        (0 on padding): the labels an oracle AUC or Recall@k is measured against.

        Each label is a pure function of (``seed``, request id, ad id) (:func:`label_uniforms`),
        so a request gets the same labels whichever system is scored on it and whatever the batch
        size, padding, candidate order, worker or process count."""
        ctr = self.pointwise_ctr(batch).cpu().double()
        ids = torch.where(batch.cand_mask, batch.cand_ids, torch.full_like(batch.cand_ids, -1)).cpu()
        draw = label_uniforms(seed, batch.request_id.cpu(), ids)
        return ((draw < ctr) & batch.cand_mask.cpu()).float().to(batch.cand_mask.device)

    def values(self, ad_ids: Tensor) -> Tensor:
        """True click values v of ``ad_ids`` (any shape); 0 for −1."""
        rows, valid = self.ad_rows(torch.as_tensor(ad_ids))
        return self.value[rows] * valid

    def outcome(
        self, batch: RequestBatch, winners_ids: Tensor, prices: Tensor, creatives: Optional[Tensor] = None
    ) -> Outcome:
        """True outcome of allocating ``winners_ids`` (B, K) at per-click ``prices`` (B, K)."""
        return self.outcome_from_context(self.context_from_batch(batch), winners_ids, prices, creatives)


_MASK64 = (1 << 64) - 1
#: Odd 64-bit constants that mix (seed, request id, ad id) before the SplitMix64 finaliser.
_LABEL_KEYS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


def label_uniforms(seed: int, request_ids: Tensor, ad_ids: Tensor) -> Tensor:
    """(B, N) float64 uniforms in [0, 1), one per (request, candidate ad): a counter-based hash
    (SplitMix64's finaliser) of (``seed``, ``request_ids`` (B,), ``ad_ids`` (B, N)), so each
    draw depends on nothing else (no generator state, batch or position)."""
    with np.errstate(over="ignore"):
        req = request_ids.numpy().astype(np.uint64)[:, None]
        ads = ad_ids.numpy().astype(np.int64).astype(np.uint64)
        k_seed, k_req, k_ad = (np.uint64(k) for k in _LABEL_KEYS)
        x = np.uint64(int(seed) & _MASK64) * k_seed + req * k_req + ads * k_ad
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return torch.from_numpy((x >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def _matrix(col: pa.ChunkedArray, path, field: str) -> np.ndarray:
    """A list column of equal-length rows -> (n, r) float32."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.list_value_length(arr).to_numpy()
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise WorldDataError(path, field, row, f"length {int(lengths[row])} differs from {int(lengths[0])}")
    width = int(lengths[0]) if len(lengths) else 0
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(arr), width)


def _padded(col: pa.ChunkedArray, width: int) -> np.ndarray:
    """A ragged list column -> (n, width) float32, zero-padded."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.list_value_length(arr).to_numpy().astype(np.int64)
    out = np.zeros((len(arr), width), dtype=np.float32)
    keep = np.arange(width)[None, :] < lengths[:, None]
    out[keep] = arr.flatten().to_numpy(zero_copy_only=False)
    return out
