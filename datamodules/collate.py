"""Collate per-request samples (:mod:`egakit.data.request_stream`) into a :class:`RequestBatch`.

Pads the candidate axis to the batch's largest N (``cand_ids`` −1, ``cand_rows`` 0, masks False,
bids and labels 0, ``exposed_slot`` −1) and the behaviour axis to its longest sequence (features 0,
mask False). Bids are gathered from the :class:`LocalAdStore` here, in the worker, so only ids,
ints and floats cross the worker boundary; ``cand_feats`` / ``cross_feats`` stay ``None`` until
the DataModule fills them on the batch's device.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from egakit.batch import RequestBatch
from egakit.features.local_store import LocalAdStore
from egakit.sim import schema

PAD_ID = -1
PAD_SLOT = -1


def _stack(samples: Sequence[dict], key: str, dtype: np.dtype) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(s[key], dtype=dtype) for s in samples]))


class RequestCollate:
    """``collate_fn`` for request samples.

    Args:
        store: the local ad store the samples' ``cand_rows`` refer to (for bids).
        min_behaviours: the behaviour axis is at least this wide (an all-empty batch still gets
            ``(B, min_behaviours, F_b)`` with a False mask, so models never see a zero-size axis).
    """

    def __init__(self, store: LocalAdStore, *, min_behaviours: int = 1):
        if min_behaviours < 0:
            raise ValueError(f"min_behaviours must be >= 0, got {min_behaviours}")
        self.store = store
        self.min_behaviours = min_behaviours

    def __call__(self, samples: Sequence[dict[str, Any]]) -> RequestBatch:
        if not samples:
            raise ValueError("cannot collate an empty list of requests")
        b = len(samples)
        k = {len(s["exposed_index"]) for s in samples}
        if len(k) != 1:
            raise ValueError(f"requests in one batch have different numbers of slots: {sorted(k)}")
        n = max(len(s["cand_ids"]) for s in samples)
        length = max(self.min_behaviours, max(len(s["bhv_feats"]) for s in samples))
        f_b = len(schema.BEHAVIOUR_CATEGORICAL)

        cand_ids = np.full((b, n), PAD_ID, np.int64)
        cand_rows = np.zeros((b, n), np.int64)
        cand_mask = np.zeros((b, n), bool)
        labels = np.zeros((b, n), np.float32)
        label_mask = np.zeros((b, n), bool)
        exposed_slot = np.full((b, n), PAD_SLOT, np.int64)
        bhv_feats = np.zeros((b, length, f_b), np.int64)
        bhv_mask = np.zeros((b, length), bool)
        for i, s in enumerate(samples):
            m, l_i = len(s["cand_ids"]), len(s["bhv_feats"])
            cand_ids[i, :m] = s["cand_ids"]
            cand_rows[i, :m] = s["cand_rows"]
            cand_mask[i, :m] = True
            labels[i, :m] = s["labels"]
            label_mask[i, :m] = s["label_mask"]
            exposed_slot[i, :m] = s["exposed_slot"]
            if l_i:
                bhv_feats[i, :l_i] = s["bhv_feats"]
                bhv_mask[i, :l_i] = True
        bids = np.where(cand_mask, self.store.bids(cand_rows), np.float32(0)).astype(np.float32)

        return RequestBatch(
            request_id=torch.tensor([s["request_id"] for s in samples], dtype=torch.int64),
            user_id=torch.tensor([s["user_id"] for s in samples], dtype=torch.int64),
            candidate_set_id=torch.tensor([s["candidate_set_id"] for s in samples], dtype=torch.int64),
            loc=_stack(samples, "loc", np.float32),
            user_feats=_stack(samples, "user_feats", np.int64),
            bhv_feats=torch.from_numpy(bhv_feats),
            bhv_mask=torch.from_numpy(bhv_mask),
            cand_ids=torch.from_numpy(cand_ids),
            cand_rows=torch.from_numpy(cand_rows),
            cand_mask=torch.from_numpy(cand_mask),
            bids=torch.from_numpy(bids),
            labels=torch.from_numpy(labels),
            label_mask=torch.from_numpy(label_mask),
            exposed_slot=torch.from_numpy(exposed_slot),
            exposed_index=_stack(samples, "exposed_index", np.int64),
            exposed_clicks=_stack(samples, "exposed_clicks", np.float32),
            is_pad=torch.tensor([bool(s.get("is_pad", False)) for s in samples], dtype=torch.bool),
        )
