"""Streaming requests: an ``IterableDataset`` over ``requests/<split>/part-*.parquet`` row groups.

One request is one sample (V1 §4.1), a dict of ids and small arrays (dense candidate features
are never built here, docs/design.md §2):

==================  ============  ===========================================================
key                 shape/dtype   meaning
==================  ============  ===========================================================
request_id          int
user_id             int
candidate_set_id    int
loc                 (2,) f32      request location (oracle only)
user_feats          (F_u,) i64    USER_CATEGORICAL (remote store) + CONTEXT_CATEGORICAL
bhv_feats           (L_i, F_b)    most recent ≤ L behaviours, oldest first (remote store)
cand_ids            (N,) i64      candidate ad ids
cand_rows           (N,) i64      rows of those ads in the :class:`LocalAdStore`
labels              (N,) f32      exposed → click, platform-labelled → platform click, else 0
label_mask          (N,) bool     the candidate carries a label
exposed_slot        (N,) i64      slot 0..K-1 of an exposed candidate, −1 otherwise
exposed_index       (K,) i64      candidate-axis position of the ad shown in slot k
exposed_clicks      (K,) f32
is_pad              bool          a repeated request that only evens out the ranks' counts
==================  ============  ===========================================================

Modes
- ``train`` (pre-training, V1 §4.1): the K exposed ads (slot order), then the request's
  platform-labelled unexposed ads, then popularity-sampled unexposed candidates of the request's
  candidate set, N_s = ``neg_samples`` unexposed in total (fewer when the set is smaller). The
  sample is without replacement, ∝ popularity (Gumbel top-k), seeded by (seed, epoch, request_id):
  the same request gets the same candidates however the data is sharded or resumed, and fresh
  ones each epoch.
- ``full`` (evaluation, RLAF): every candidate of the set, ascending ad id; exposed and
  platform-labelled ones carry their labels.

Order, ranks and equal counts
    The split's rows form one sequence per epoch (row groups in file order, or shuffled per epoch,
    rows shuffled within windows of ``shuffle_buffer`` positions), which depends on the seed and
    the epoch only. Ranks interleave it row by row: rank r of W' takes positions r, r + W', …, so
    every global batch (b requests on each of W' ranks) holds the requests of one batch of a
    one-process run with batch b·W', and every rank yields the same count R (DDP hangs
    otherwise). ``remainder="drop"`` drops the < W' left-over rows (training: with shuffling a
    different tail each epoch, and no request is seen twice); ``remainder="pad"`` repeats the
    first rows instead, flagged ``is_pad`` with no labels (evaluation: every request is seen).

Workers and exact resume
    Batch i of a rank comes from DataLoader worker i mod W and the loader takes batches
    round-robin, so the batches arrive in order whatever the worker count. The dataset's state is
    (epoch, batches the model consumed): on resume each worker skips exactly its consumed batches
    (rotating worker roles so that the first batch after the resume comes from worker 0). The same
    ``num_workers`` and ``batch_size`` are required to resume; :class:`RequestLoader` checkpoints
    this state instead of the prefetching loader's (Lightning's prefetch would skip one batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import IterableDataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

from egakit.errors import WorldDataError
from egakit.features.local_store import CandidateSets, LocalAdStore
from egakit.features.remote_store import ParquetUserStore, RemoteUserStore
from egakit.sim import schema
from egakit.sim.io import check_file_schema, load_world_meta, request_files, validate_batch
from egakit.sim.schema import HOURS_PER_DAY

Mode = Literal["train", "full"]
Remainder = Literal["drop", "pad"]
STATE_VERSION = 1

_SCALARS = ("request_id", "day", "hour", "user_id", "geo_cell", "loc_x", "loc_y", "candidate_set_id")
_LISTS = ("exposed_ids", "clicks", "platform_ids", "platform_clicks")


@dataclass(frozen=True)
class _Segment:
    """A run of rows of one row group: the unit that shuffling permutes and shards cut."""

    file: int  # index into RequestStream.files
    row_group: int
    start: int  # first row within the row group
    stop: int  # one past the last row

    @property
    def size(self) -> int:
        return self.stop - self.start


class _RowGroup:
    """One validated row group as numpy: scalar columns and (offsets, values) list columns."""

    def __init__(self, table: pa.Table, path: Path, row0: int):
        self.path = path
        self.row0 = row0  # row offset of this row group within its file (for error messages)
        self.scalars = {name: table.column(name).to_numpy() for name in _SCALARS}
        self.lists = {}
        for name in _LISTS:
            arr = table.column(name).combine_chunks()
            self.lists[name] = (arr.offsets.to_numpy(), arr.values.to_numpy())

    def list(self, name: str, i: int) -> np.ndarray:
        offsets, values = self.lists[name]
        return values[offsets[i] : offsets[i + 1]]


class RequestStream(IterableDataset):
    """Per-request samples of one split, interleaved across ranks, shuffled and resumable.

    Args:
        world_dir: the world directory.
        split: one of ``schema.SPLITS``.
        mode: ``"train"`` (K exposed + N_s sampled) or ``"full"`` (whole candidate set).
        neg_samples: N_s, unexposed candidates per request in train mode (docs/design.md §5: 2995 at scale).
        max_behaviours: L served per user; ``None`` takes world.json's ``max_behaviours``.
        batch_size: requests per batch; the resume arithmetic and ``num_batches`` need it.
        num_workers: DataLoader workers that will iterate this dataset (0 = main process).
        rank, world_size: this process's DDP rank and the number of ranks.
        seed: seeds shuffling and candidate sampling (with the epoch).
        shuffle: shuffle row-group order per epoch and rows within blocks of ``shuffle_buffer``.
        shuffle_buffer: rows per shuffle block (memory: the row groups one block touches).
        remainder: ``"drop"`` or ``"pad"`` (with repeats flagged ``is_pad``) the rows that do not
            divide equally among the ranks.
        limit: use only the first ``limit`` rows of the split (file order), e.g. a validation slice.
        behaviours_before_request: serve only behaviours strictly before the request time.
        ad_store, candidate_sets, user_store: share already-loaded stores (default: load them).
    """

    def __init__(
        self,
        world_dir: str | Path,
        split: str,
        *,
        mode: Mode = "train",
        neg_samples: int = 2995,
        max_behaviours: Optional[int] = None,
        batch_size: int = 32,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = False,
        shuffle_buffer: int = 1024,
        remainder: Remainder = "drop",
        limit: Optional[int] = None,
        behaviours_before_request: bool = True,
        ad_store: Optional[LocalAdStore] = None,
        candidate_sets: Optional[CandidateSets] = None,
        user_store: Optional[RemoteUserStore] = None,
    ):
        super().__init__()
        if split not in schema.SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {schema.SPLITS}")
        if mode not in ("train", "full"):
            raise ValueError(f"mode must be 'train' or 'full', got {mode!r}")
        if remainder not in ("drop", "pad"):
            raise ValueError(f"remainder must be 'drop' or 'pad', got {remainder!r}")
        for name, value, low in (
            ("neg_samples", neg_samples, 0),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("world_size", world_size, 1),
            ("shuffle_buffer", shuffle_buffer, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")

        self.world_dir = Path(world_dir)
        self.split = split
        self.mode: Mode = mode
        self.neg_samples = neg_samples
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.remainder: Remainder = remainder
        self.behaviours_before_request = behaviours_before_request

        self.meta = load_world_meta(self.world_dir)
        self.num_slots = int(self.meta["K"])
        self.ad_store = ad_store if ad_store is not None else LocalAdStore(self.world_dir)
        self.candidate_sets = candidate_sets if candidate_sets is not None else CandidateSets(self.world_dir, self.ad_store)
        self.user_store = user_store if user_store is not None else ParquetUserStore(self.world_dir, max_behaviours)

        self.files = [Path(p) for p in request_files(self.world_dir, split)]
        self._segments = self._scan(limit)
        self.num_requests = sum(seg.size for seg in self._segments)

        self.epoch = 0
        self.consumed_batches = 0  # batches of this epoch the model consumed (per rank)

    # -- layout ---------------------------------------------------------------------------------
    def _scan(self, limit: Optional[int]) -> list[_Segment]:
        segments: list[_Segment] = []
        remaining = math.inf if limit is None else limit
        for f, path in enumerate(self.files):
            meta = check_file_schema(path, "requests").metadata
            for rg in range(meta.num_row_groups):
                n = int(min(meta.row_group(rg).num_rows, remaining))
                if n > 0:
                    segments.append(_Segment(f, rg, 0, n))
                remaining -= n
        return segments

    @property
    def workers(self) -> int:
        """Processes that yield samples per rank (the main process counts as one)."""
        return max(1, self.num_workers)

    @property
    def rank_size(self) -> int:
        """R: samples every rank yields per epoch (the same on every rank, so DDP never waits)."""
        if self.remainder == "drop":
            return self.num_requests // self.world_size
        return -(-self.num_requests // self.world_size)

    def __len__(self) -> int:
        """Samples this rank yields per epoch."""
        return self.rank_size

    def num_batches(self) -> int:
        """Batches this rank yields per epoch (only the last one may be partial)."""
        return -(-self.rank_size // self.batch_size)

    # -- state (exact resume) -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``; a new epoch resets the consumed count, the current one keeps it."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.consumed_batches = 0

    def rewind(self) -> None:
        """Go back to the start of the current epoch."""
        self.consumed_batches = 0

    def advance(self, batches: int = 1) -> None:
        """Record that the model consumed ``batches`` more batches of this epoch."""
        self.consumed_batches += batches

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "consumed_batches": self.consumed_batches,
            "batch_size": self.batch_size,
            "num_workers": self.workers,
            "world_size": self.world_size,
            "num_requests": self.num_requests,
            "split": self.split,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state``'s position; the data layout must match (else ValueError)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"request-stream state version {state.get('version')!r}, expected {STATE_VERSION}")
        for key in ("batch_size", "num_workers", "world_size", "num_requests", "split", "seed"):
            mine = self.state_dict()[key]
            if state[key] != mine:
                raise ValueError(
                    f"cannot resume the request stream exactly: the checkpoint has {key}={state[key]!r}, "
                    f"this run has {key}={mine!r} (the consumed position depends on it)"
                )
        self.epoch = int(state["epoch"])
        self.consumed_batches = int(state["consumed_batches"])

    # -- epoch plan -----------------------------------------------------------------------------
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *key])

    def _epoch_segments(self) -> list[_Segment]:
        if not self.shuffle:
            return self._segments
        order = self._rng(0).permutation(len(self._segments))
        return [self._segments[i] for i in order]

    def _epoch_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's global order of the R·W' positions (W' = world size): (position in the
        split, is_pad), shuffled within windows of ``shuffle_buffer`` positions. It depends on the
        seed and the epoch only, not on the rank, world size or worker count."""
        total = self.rank_size * self.world_size
        pos = np.arange(total, dtype=np.int64)
        is_pad = pos >= self.num_requests
        if self.num_requests:
            pos %= self.num_requests
        if self.shuffle:
            for w, lo in enumerate(range(0, total, self.shuffle_buffer)):
                hi = min(lo + self.shuffle_buffer, total)
                perm = lo + self._rng(1, w).permutation(hi - lo)
                pos[lo:hi], is_pad[lo:hi] = pos[perm], is_pad[perm]
        return pos, is_pad

    def _rank_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[_Segment]]:
        """This rank's R rows in yield order: (segment index, row within the row group, is_pad,
        shuffle window), and the epoch's segment list the indices refer to.

        Ranks interleave row by row (rank r takes global positions r, r + W', r + 2W', …), so the
        b·W' requests of global batch j are those of batch j of a one-process run with batch
        b·W': DDP's averaged gradient is the one-process gradient."""
        segments = self._epoch_segments()
        sizes = np.array([seg.size for seg in segments], dtype=np.int64)
        ends = np.cumsum(sizes)
        pos, is_pad = self._epoch_order()
        mine = np.arange(self.rank, len(pos), self.world_size, dtype=np.int64)
        pos, is_pad = pos[mine], is_pad[mine]
        seg = np.searchsorted(ends, pos, side="right")
        starts = np.array([s.start for s in segments], dtype=np.int64)
        row = pos - (ends[seg] - sizes[seg]) + starts[seg] if seg.size else pos
        return seg, row, is_pad, mine // self.shuffle_buffer, segments

    # -- iteration ------------------------------------------------------------------------------
    def _worker(self) -> tuple[int, int]:
        """(logical worker, workers) of the calling process; checks the worker count."""
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        if workers != self.workers:
            raise RuntimeError(
                f"RequestStream was built for num_workers={self.num_workers} but is iterated by "
                f"{'a DataLoader with ' + str(workers) + ' workers' if info else 'the main process'}; "
                "pass the same num_workers to both (shards and resume depend on it)"
            )
        physical = info.id if info is not None else 0
        # Global batch g comes from logical worker g mod W: after consuming n batches the loader's
        # worker 0 must play logical worker n mod W.
        return (physical + self.consumed_batches) % workers, workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """This worker's samples: batch i of the rank comes from logical worker i mod W, so the
        rank's batches arrive in order whatever the worker count; consumed batches are skipped."""
        logical, workers = self._worker()
        seg_idx, rows, pads, windows, segments = self._rank_rows()
        files: dict[int, pq.ParquetFile] = {}
        groups: dict[tuple[int, int], _RowGroup] = {}
        window = -1
        for batch in range(self.consumed_batches + (logical - self.consumed_batches) % workers, self.num_batches(), workers):
            for i in range(batch * self.batch_size, min((batch + 1) * self.batch_size, len(rows))):
                if windows[i] != window:  # the row groups of one shuffle window are read once
                    window, groups = int(windows[i]), {}
                seg = segments[seg_idx[i]]
                key = (seg.file, seg.row_group)
                if key not in groups:
                    groups[key] = self._read_row_group(files, seg.file, seg.row_group)
                yield self._sample(groups[key], int(rows[i]), bool(pads[i]))

    def _read_row_group(self, files: dict[int, pq.ParquetFile], f: int, rg: int) -> _RowGroup:
        path = self.files[f]
        if f not in files:
            files[f] = pq.ParquetFile(path, memory_map=True)
        pf = files[f]
        row0 = sum(pf.metadata.row_group(i).num_rows for i in range(rg))
        try:
            table = pf.read_row_group(rg)
        except (OSError, pa.ArrowException) as err:
            raise WorldDataError(path, None, None, f"corrupt row group {rg}: {err}") from err
        validate_batch(table, "requests", path, row0, meta=self.meta)
        return _RowGroup(table, path, row0)

    # -- one request ----------------------------------------------------------------------------
    def _positions(self, set_ids: np.ndarray, ids: np.ndarray, group: _RowGroup, i: int, field: str, set_id: int) -> np.ndarray:
        """Positions of ``ids`` in the (sorted) candidate set; ids outside the set are an error."""
        pos = np.searchsorted(set_ids, ids)
        ok = pos < set_ids.size
        ok[ok] = set_ids[pos[ok]] == ids[ok]
        if not ok.all():
            bad = int(ids[np.flatnonzero(~ok)[0]])
            raise WorldDataError(group.path, field, group.row0 + i, f"ad {bad} is not in candidate set {set_id}")
        if np.unique(pos).size != pos.size:
            raise WorldDataError(group.path, field, group.row0 + i, "repeated ad id")
        return pos

    def _sample(self, group: _RowGroup, i: int, is_pad: bool) -> dict[str, Any]:
        sc = {name: col[i] for name, col in group.scalars.items()}
        request_id, set_id = int(sc["request_id"]), int(sc["candidate_set_id"])
        set_rows = self.candidate_sets.rows(set_id)  # (N_set,) ascending ad id
        set_ids = self.ad_store.ids[set_rows]
        exposed = group.list("exposed_ids", i)
        clicks = group.list("clicks", i).astype(np.float32)
        platform = group.list("platform_ids", i)
        platform_clicks = group.list("platform_clicks", i).astype(np.float32)
        if exposed.size != self.num_slots:
            raise WorldDataError(group.path, "exposed_ids", group.row0 + i, f"{exposed.size} exposed ads, world K = {self.num_slots}")
        exp_pos = self._positions(set_ids, exposed, group, i, "exposed_ids", set_id)
        plat_pos = self._positions(set_ids, platform, group, i, "platform_ids", set_id)
        if np.intersect1d(exp_pos, plat_pos).size:
            raise WorldDataError(group.path, "platform_ids", group.row0 + i, "a platform-labelled ad was also exposed")

        k = self.num_slots
        if self.mode == "full":
            cand_pos = np.arange(set_ids.size)
            labels = np.zeros(set_ids.size, np.float32)
            label_mask = np.zeros(set_ids.size, bool)
            exposed_slot = np.full(set_ids.size, -1, np.int64)
            labels[exp_pos], labels[plat_pos] = clicks, platform_clicks
            label_mask[exp_pos] = label_mask[plat_pos] = True
            exposed_slot[exp_pos] = np.arange(k)
            exposed_index = exp_pos.astype(np.int64)
        else:
            n_plat = min(plat_pos.size, self.neg_samples)
            free = np.ones(set_ids.size, bool)
            free[exp_pos] = free[plat_pos] = False
            sampled = self._popularity_sample(set_rows, np.flatnonzero(free), self.neg_samples - n_plat, request_id)
            cand_pos = np.concatenate([exp_pos, plat_pos[:n_plat], sampled])
            labels = np.concatenate([clicks, platform_clicks[:n_plat], np.zeros(sampled.size, np.float32)])
            label_mask = np.arange(cand_pos.size) < k + n_plat
            exposed_slot = np.where(np.arange(cand_pos.size) < k, np.arange(cand_pos.size), -1).astype(np.int64)
            exposed_index = np.arange(k, dtype=np.int64)
        if is_pad:
            label_mask = np.zeros_like(label_mask)

        as_of = int(sc["day"]) * HOURS_PER_DAY + int(sc["hour"]) if self.behaviours_before_request else None
        user = self.user_store.get(np.array([sc["user_id"]]), None if as_of is None else np.array([as_of]))
        context = np.array([int(sc[name]) for name in schema.CONTEXT_CATEGORICAL], dtype=np.int64)
        return {
            "request_id": request_id,
            "user_id": int(sc["user_id"]),
            "candidate_set_id": set_id,
            "loc": np.array([sc["loc_x"], sc["loc_y"]], dtype=np.float32),
            "user_feats": np.concatenate([user.profile[0], context]),
            "bhv_feats": user.sequence(0),
            "cand_ids": set_ids[cand_pos],
            "cand_rows": set_rows[cand_pos],
            "labels": labels.astype(np.float32, copy=False),
            "label_mask": label_mask,
            "exposed_slot": exposed_slot,
            "exposed_index": exposed_index,
            "exposed_clicks": clicks,
            "is_pad": is_pad,
        }

    def _popularity_sample(self, set_rows: np.ndarray, free: np.ndarray, n: int, request_id: int) -> np.ndarray:
        """``n`` of the candidate positions ``free``, without replacement ∝ popularity (ascending)."""
        if n <= 0 or free.size == 0:
            return free[:0]
        if n >= free.size:
            return free
        keys = np.log(self.ad_store.popularity(set_rows[free])) + self._rng(2, request_id).gumbel(size=free.size)
        return np.sort(free[np.argpartition(-keys, n - 1)[:n]])


class RequestLoader(StatefulDataLoader):
    """torchdata ``StatefulDataLoader`` over a :class:`RequestStream` that checkpoints the exact
    consumed position.

    ``state_dict()`` / ``load_state_dict()`` are the stream's (epoch, consumed batches), not the
    worker snapshots of the prefetching loader, which run ahead of the model. Iteration
    starts at the stream's position.

    ``count_yielded=True`` (a plain loop): every batch handed out counts as consumed, and a pass
    that runs to the end resets the position, so the next pass replays the epoch (call
    ``dataset.set_epoch`` for a new one). ``False``: the position moves only through
    ``dataset.advance()``: the Lightning DataModule counts in ``on_train_batch_end``
    (:class:`egakit.data.world.ConsumedBatchesTracker`), and evaluation loaders never move.
    """

    def __init__(self, dataset: RequestStream, collate_fn=None, *, count_yielded: bool = True, **kwargs: Any):
        kwargs.setdefault("snapshot_every_n_steps", None)  # the stream owns the position
        super().__init__(
            dataset,
            batch_size=dataset.batch_size,
            num_workers=dataset.num_workers,
            collate_fn=collate_fn,
            drop_last=False,
            persistent_workers=False,  # workers must be re-created to see a new epoch / position
            **kwargs,
        )
        self.count_yielded = count_yielded

    def __len__(self) -> int:
        return self.dataset.num_batches()

    def __iter__(self):
        for batch in super().__iter__():
            if self.count_yielded:
                self.dataset.advance()
            yield batch
        if self.count_yielded:
            self.dataset.rewind()

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self.dataset.load_state_dict(state_dict)
        super().load_state_dict({})
