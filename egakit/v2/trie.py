"""A prefix trie over semantic-id tuples, stored as sorted tensors (for constrained decoding).

The tuples are (N, L) int64 with token l in [0, V_l). A node at depth t (a prefix of t tokens)
is an index into the sorted distinct prefixes of length t; the root is node 0 at depth 0. The
children of node g at depth t are stored as keys ``g · V_t + token`` in one sorted int64 tensor
per depth, so

- walking a prefix is one ``searchsorted`` per level for the whole batch,
- the children of a batch of nodes are contiguous ranges of that tensor (two ``searchsorted``),

and no Python dict is touched per step: a beam search over N_S beams x K positions calls
:meth:`PrefixTrie.allowed_from_nodes` once per level on (B · N_S) nodes.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

#: Keys ``node · V + token`` must fit in int64 with room to spare.
MAX_KEY = 2**62


class PrefixTrie:
    """Prefix trie of N distinct tuples (N, L) with vocabulary sizes ``level_sizes`` (L,).

    Leaves map back to the tuple's row (the item): :meth:`items_of`.
    """

    def __init__(self, tuples: Tensor, level_sizes: Sequence[int]) -> None:
        tuples = torch.as_tensor(tuples)
        if tuples.ndim != 2 or tuples.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"PrefixTrie expects an integer tensor (N, L), got {tuple(tuples.shape)} {tuples.dtype}")
        tuples = tuples.long()
        n, depth = tuples.shape
        self.level_sizes = tuple(int(v) for v in level_sizes)
        if len(self.level_sizes) != depth:
            raise ValueError(f"level_sizes has {len(self.level_sizes)} entries, the tuples have {depth} tokens")
        for level, size in enumerate(self.level_sizes):
            column = tuples[:, level]
            if n and (column.min() < 0 or column.max() >= size):
                bad = int(((column < 0) | (column >= size)).nonzero()[0, 0])
                raise ValueError(f"token {int(column[bad])} of row {bad} at level {level} is outside [0, {size})")
        self.depth = depth
        self.n_items = n
        #: keys[t]: sorted distinct ``parent · V_t + token`` for the prefixes of length t + 1.
        self.keys: list[Tensor] = []
        parent = torch.zeros(n, dtype=torch.long, device=tuples.device)
        n_parents = 1
        for level, size in enumerate(self.level_sizes):
            if n_parents * size >= MAX_KEY:
                raise ValueError(f"trie level {level}: {n_parents} prefixes x {size} tokens overflow int64 keys")
            distinct, parent = torch.unique(parent * size + tuples[:, level], sorted=True, return_inverse=True)
            self.keys.append(distinct)
            n_parents = distinct.numel()
        if n_parents != n:
            seen = {}
            for row, tup in enumerate(tuples.tolist()):
                if tuple(tup) in seen:
                    raise ValueError(f"PrefixTrie: rows {seen[tuple(tup)]} and {row} hold the same tuple {tuple(tup)}")
                seen[tuple(tup)] = row
        #: leaf_items[leaf node] = row of that tuple.
        self.leaf_items = torch.empty(n, dtype=torch.long, device=tuples.device)
        self.leaf_items[parent] = torch.arange(n, device=tuples.device)

    @property
    def device(self) -> torch.device:
        return self.leaf_items.device

    def to(self, device) -> "PrefixTrie":
        """Move the trie's tensors to ``device`` (in place); returns self."""
        self.keys = [k.to(device) for k in self.keys]
        self.leaf_items = self.leaf_items.to(device)
        return self

    def step(self, nodes: Tensor, depth: int, tokens: Tensor, found: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Children along ``tokens``: nodes (B,) at ``depth`` and tokens (B,) -> (nodes (B,) at
        depth + 1, found (B,) bool). A missing child gives node 0 with found False."""
        if not 0 <= depth < self.depth:
            raise ValueError(f"step from depth {depth}: the trie has depths 0..{self.depth - 1} below its leaves")
        size = self.level_sizes[depth]
        keys = self.keys[depth]
        tokens = tokens.long()
        query = nodes.long() * size + tokens
        position = torch.searchsorted(keys, query).clamp_max(max(keys.numel() - 1, 0))
        hit = (tokens >= 0) & (tokens < size)
        if keys.numel():
            hit &= keys[position] == query
        else:
            hit &= False
        if found is not None:
            hit &= found
        return torch.where(hit, position, torch.zeros_like(position)), hit

    def walk(self, prefixes: Tensor) -> tuple[Tensor, Tensor]:
        """Node of each prefix: prefixes (B, t) -> (nodes (B,) at depth t, found (B,) bool)."""
        if prefixes.ndim != 2 or prefixes.shape[1] > self.depth:
            raise ValueError(f"prefixes must be (B, t) with t <= {self.depth}, got {tuple(prefixes.shape)}")
        batch = prefixes.shape[0]
        nodes = torch.zeros(batch, dtype=torch.long, device=self.device)
        found = torch.ones(batch, dtype=torch.bool, device=self.device)
        prefixes = prefixes.to(self.device)
        for depth in range(prefixes.shape[1]):
            nodes, found = self.step(nodes, depth, prefixes[:, depth], found)
        return nodes, found

    def allowed_from_nodes(self, nodes: Tensor, depth: int, found: Optional[Tensor] = None) -> Tensor:
        """Allowed next tokens of nodes (B,) at ``depth`` -> (B, V_depth) bool; rows where
        ``found`` is False are all False."""
        if not 0 <= depth < self.depth:
            raise ValueError(f"no next token after depth {depth}: tuples have {self.depth} tokens")
        size = self.level_sizes[depth]
        keys = self.keys[depth]
        nodes = nodes.long().to(self.device)
        batch = nodes.shape[0]
        low = torch.searchsorted(keys, nodes * size)
        high = torch.searchsorted(keys, (nodes + 1) * size)
        counts = high - low
        if found is not None:
            counts = torch.where(found.to(self.device), counts, torch.zeros_like(counts))
        mask = torch.zeros(batch, size, dtype=torch.bool, device=self.device)
        total = int(counts.sum())
        if total == 0:
            return mask
        rows = torch.repeat_interleave(torch.arange(batch, device=self.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        child = low[rows] + torch.arange(total, device=self.device) - starts[rows]
        mask[rows, keys[child] - nodes[rows] * size] = True
        return mask

    def allowed_next(self, prefixes: Tensor) -> Tensor:
        """Allowed next tokens after each prefix: prefixes (B, t) -> (B, V_t) bool mask; an unknown
        prefix allows nothing."""
        nodes, found = self.walk(prefixes)
        return self.allowed_from_nodes(nodes, prefixes.shape[1], found)

    def items_of(self, leaves: Tensor, found: Optional[Tensor] = None) -> Tensor:
        """Rows of leaf nodes (B,) at depth L -> (B,) int64; -1 where ``found`` is False."""
        items = self.leaf_items[leaves.long().to(self.device)]
        if found is not None:
            items = torch.where(found.to(self.device), items, torch.full_like(items, -1))
        return items

    def lookup(self, tuples: Tensor) -> tuple[Tensor, Tensor]:
        """Rows of full tuples (B, L) -> (items (B,) with -1 where unknown, found (B,) bool)."""
        if tuples.ndim != 2 or tuples.shape[1] != self.depth:
            raise ValueError(f"tuples must be (B, {self.depth}), got {tuple(tuples.shape)}")
        leaves, found = self.walk(tuples)
        return self.items_of(leaves, found), found
