"""The mechanism interface that regret and Ψ are computed against, and its GSP / VCG adapters.

A mechanism maps bids (B, N) and a *batch context* (whatever else it needs: CTRs, masks, a
model's inputs…) to ``(winners (B, K) int64, prices (B, K) per click)``; ``winners`` may hold
−1 for an empty slot. Regret re-runs it on misreported bids with the context's rows selected by
:func:`index_batch`, so a context must be batch-first (every tensor's dim 0 is the request)
unless it defines its own ``index_batch(rows)``.

A mechanism that also exposes ``scores(bids, batch_context) -> (B, N)`` — an allocation score
that depends only on the ad's own bid, is non-decreasing in it, and is ``-inf`` on padding —
is a :class:`ScoredMechanism`; regret then tests only the ads that could reach the top K.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Tuple, Union, runtime_checkable

import torch
from torch import Tensor

from egakit.auction.position import GSP, MECHANISMS, VCG, expand_slot_ctr, position_auction, rank_scores


@runtime_checkable
class Mechanism(Protocol):
    def allocate(self, bids: Tensor, batch_context: Any) -> Tuple[Tensor, Tensor]:
        """``(winners (B, K) int64, prices (B, K))`` for bids (B, N)."""
        ...


@runtime_checkable
class ScoredMechanism(Mechanism, Protocol):
    def scores(self, bids: Tensor, batch_context: Any) -> Tensor:
        """(B, N) allocation scores: own-bid only, non-decreasing in it, ``-inf`` on padding."""
        ...


def index_batch(obj: Any, rows: Tensor) -> Any:
    """Select request rows ``rows`` (1-D int64, repeats allowed) of a batch context.

    Objects with an ``index_batch(rows)`` method use it; tensors are indexed on dim 0 (0-d
    tensors are kept); dataclasses, mappings, lists and tuples are handled field by field;
    anything else (ints, strings, None) is returned unchanged.
    """
    if hasattr(obj, "index_batch") and not isinstance(obj, type):
        return obj.index_batch(rows)
    if torch.is_tensor(obj):
        return obj if obj.dim() == 0 else obj[rows]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: index_batch(getattr(obj, f.name), rows) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, Mapping):
        return {k: index_batch(v, rows) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(index_batch(v, rows) for v in obj)
    return obj


@dataclass(frozen=True)
class PositionContext:
    """Batch context of a separable-CTR position auction.

    ``ctr`` (B, N), ``slot_ctr`` (K,) or (B, K), ``mask`` (B, N) bool, ``K`` slots.
    """

    ctr: Tensor
    slot_ctr: Tensor
    mask: Tensor
    K: int

    def index_batch(self, rows: Tensor) -> "PositionContext":
        slot = self.slot_ctr if self.slot_ctr.dim() == 1 else self.slot_ctr[rows]
        return PositionContext(ctr=self.ctr[rows], slot_ctr=slot, mask=self.mask[rows], K=self.K)


class PositionMechanism:
    """GSP or VCG (:func:`position_auction`) behind the :class:`ScoredMechanism` interface."""

    def __init__(self, name: str):
        if name not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, got {name!r}")
        self.name = name

    def allocate(self, bids: Tensor, batch_context: PositionContext) -> Tuple[Tensor, Tensor]:
        c = batch_context
        out = position_auction(bids, c.ctr, c.slot_ctr, c.mask, c.K, mechanism=self.name)
        return out.winners, out.prices

    def scores(self, bids: Tensor, batch_context: PositionContext) -> Tensor:
        c = batch_context
        return rank_scores(bids, c.ctr.to(bids.dtype), c.mask)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class GSPMechanism(PositionMechanism):
    def __init__(self) -> None:
        super().__init__(GSP)


class VCGMechanism(PositionMechanism):
    def __init__(self) -> None:
        super().__init__(VCG)


def as_mechanism(mechanism: Union[str, Mechanism]) -> Mechanism:
    """``"gsp"`` / ``"vcg"`` → the adapter; a :class:`Mechanism` is returned as is."""
    if isinstance(mechanism, str):
        return PositionMechanism(mechanism)
    if not isinstance(mechanism, Mechanism):
        raise TypeError(f"mechanism must be 'gsp', 'vcg' or have allocate(bids, batch_context); got {mechanism!r}")
    return mechanism


def separable_ctr(winners: Tensor, batch_context: PositionContext) -> Tensor:
    """Click rate of each slot's winner, ``ctr_i · θ_k`` (B, K); 0 for an empty slot (−1).

    The default ``ctr_fn`` for position auctions: scores utilities with the same CTRs the
    auction ranks by. Pass another ``ctr_fn(winners, batch_context)`` (an evaluator's pCTR, the
    world oracle's truth) to score them differently.
    """
    c = batch_context
    B, K = winners.shape
    filled = winners >= 0
    own = c.ctr.gather(1, winners.clamp_min(0))
    theta = expand_slot_ctr(c.slot_ctr, B, K).to(own.dtype)
    return torch.where(filled, own * theta, torch.zeros_like(own))
