"""Semantic ids with a collision suffix: every item gets a unique tuple (c_1, ..., c_C, s).

(c_1..c_C) are the item's RQ-VAE codes (EGA-V2 Eq. 12); s = 0, 1, ... numbers the items that
share those C codes, in item order, so the C + 1 tokens identify exactly one item. Items are the
rows of the embedding table that was tokenised (row i = item i).

The tables are plain tensors, saved with ``torch.save`` beside a checkpoint and loaded with
``torch.load(weights_only=True)``; a :class:`~egakit.v2.trie.PrefixTrie` over the tuples serves
``decode`` and constrained decoding.
"""
from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from egakit.v2.trie import PrefixTrie

#: Version of the saved table layout (bumped when the keys or their meaning change).
FORMAT_VERSION = 1
_KEYS = ("format_version", "ids", "level_sizes")


class UnknownSemanticIdError(KeyError):
    """A tuple that no item holds; names the tuple and its row in the batch."""

    def __init__(self, row: int, tuple_: Sequence[int]) -> None:
        self.row = row
        self.tuple = tuple(int(t) for t in tuple_)
        super().__init__(f"semantic id {self.tuple} (batch row {row}) belongs to no item")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def collision_suffix(codes: Tensor) -> Tensor:
    """s for each item: codes (N, C) -> (N,) int64, s = number of earlier items (lower row) with
    the same C codes."""
    n = codes.shape[0]
    order = torch.arange(n, device=codes.device)
    for level in reversed(range(codes.shape[1])):  # stable radix sort: lexicographic, ties by row
        order = order[torch.sort(codes[order, level], stable=True).indices]
    ordered = codes[order]
    position = torch.arange(n, device=codes.device)
    starts_group = torch.ones(n, dtype=torch.bool, device=codes.device)
    if n > 1:
        starts_group[1:] = (ordered[1:] != ordered[:-1]).any(dim=1)
    group_start = torch.cummax(torch.where(starts_group, position, torch.zeros_like(position)), dim=0).values
    suffix = torch.empty_like(position)
    suffix[order] = position - group_start
    return suffix


class SemanticIds:
    """Item <-> semantic-id tables of N items with C code levels plus the suffix level.

    ids: (N, C + 1) int64, row i = item i's tuple (c_1..c_C, s).
    level_sizes: (C + 1) vocabulary sizes: W for each code level, then the suffix vocabulary.
    """

    def __init__(self, ids: Tensor, level_sizes: Sequence[int]) -> None:
        ids = torch.as_tensor(ids)
        if ids.ndim != 2 or ids.shape[1] < 2:
            raise ValueError(f"ids must be (N, C + 1) with C >= 1, got {tuple(ids.shape)}")
        self.ids = ids.long()
        self.level_sizes = tuple(int(v) for v in level_sizes)
        self.trie = PrefixTrie(self.ids, self.level_sizes)

    @classmethod
    def from_codes(cls, codes: Tensor, codebook_size: int, suffix_size: Optional[int] = None) -> "SemanticIds":
        """Tables for items with RQ-VAE codes (N, C), W = ``codebook_size``. The suffix vocabulary
        is the largest collision group's size, or ``suffix_size`` when given (an error if a group
        is larger: the decoder's vocabulary would not hold it)."""
        codes = torch.as_tensor(codes).long()
        if codes.ndim != 2:
            raise ValueError(f"codes must be (N, C), got {tuple(codes.shape)}")
        suffix = collision_suffix(codes)
        needed = int(suffix.max()) + 1 if suffix.numel() else 1
        if suffix_size is None:
            suffix_size = needed
        elif needed > suffix_size:
            raise ValueError(f"{needed} items share one code tuple, more than suffix_size={suffix_size}")
        ids = torch.cat([codes, suffix.unsqueeze(1)], dim=1)
        return cls(ids, [codebook_size] * codes.shape[1] + [suffix_size])

    @property
    def n_items(self) -> int:
        return self.ids.shape[0]

    @property
    def n_levels(self) -> int:
        """C, the number of code levels (the tuples have C + 1 tokens)."""
        return self.ids.shape[1] - 1

    @property
    def suffix_size(self) -> int:
        return self.level_sizes[-1]

    @property
    def collision_rate(self) -> float:
        """Fraction of items whose C codes are shared with an earlier item (suffix > 0)."""
        return float((self.ids[:, -1] > 0).float().mean()) if self.n_items else 0.0

    def encode(self, items: Tensor) -> Tensor:
        """Tuples of items: (B,) int64 rows -> (B, C + 1)."""
        items = torch.as_tensor(items).long()
        bad = (items < 0) | (items >= self.n_items)
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise IndexError(f"item {int(items[row])} (batch row {row}) is outside [0, {self.n_items})")
        return self.ids[items.to(self.ids.device)]

    def decode(self, tuples: Tensor, strict: bool = True) -> Tensor:
        """Items of tuples: (B, C + 1) -> (B,) int64. An unknown tuple raises
        :class:`UnknownSemanticIdError` (``strict``) or gives -1."""
        tuples = torch.as_tensor(tuples).long()
        if tuples.ndim != 2 or tuples.shape[1] != self.ids.shape[1]:
            raise ValueError(f"tuples must be (B, {self.ids.shape[1]}), got {tuple(tuples.shape)}")
        items, found = self.trie.lookup(tuples)
        if strict and not found.all():
            row = int((~found).nonzero()[0, 0])
            raise UnknownSemanticIdError(row, tuples[row].tolist())
        return items

    def to_dict(self) -> dict[tuple[int, ...], int]:
        """{tuple: item} for every item (for inspection; decoding uses the trie)."""
        return {tuple(t): i for i, t in enumerate(self.ids.tolist())}

    def state_dict(self) -> dict[str, Tensor]:
        """Plain tensors only, so the tables load with ``torch.load(weights_only=True)``."""
        return {
            "format_version": torch.tensor(FORMAT_VERSION),
            "ids": self.ids.cpu(),
            "level_sizes": torch.tensor(self.level_sizes, dtype=torch.long),
        }

    @classmethod
    def from_state_dict(cls, state: dict, source: str = "<state dict>") -> "SemanticIds":
        missing = [k for k in _KEYS if k not in state]
        if missing:
            raise ValueError(f"{source}: not semantic-id tables, missing {missing}")
        version = int(state["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(f"{source}: semantic-id tables format {version}, this egakit reads {FORMAT_VERSION}")
        return cls(state["ids"], state["level_sizes"].tolist())

    def save(self, path: Union[str, PathLike]) -> Path:
        """Write the tables to ``path`` (torch.save of plain tensors); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    @classmethod
    def load(cls, path: Union[str, PathLike], map_location="cpu") -> "SemanticIds":
        """Read tables written by :meth:`save` (``weights_only=True``: no code runs on load)."""
        state = torch.load(Path(path), map_location=map_location, weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: not semantic-id tables (a {type(state).__name__}, not a dict)")
        return cls.from_state_dict(state, source=str(path))
