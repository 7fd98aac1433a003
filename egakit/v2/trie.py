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
        node_of_row = []  # node_of_row[t][r]: the node of row r's prefix of length t + 1
        for level, size in enumerate(self.level_sizes):
            if n_parents * size >= MAX_KEY:
                raise ValueError(f"trie level {level}: {n_parents} prefixes x {size} tokens overflow int64 keys")
            distinct, parent = torch.unique(parent * size + tuples[:, level], sorted=True, return_inverse=True)
            self.keys.append(distinct)
            node_of_row.append(parent)
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
        #: leaf_of_item[row] = leaf node of that row's tuple.
        self.leaf_of_item = parent
        # Leaves are in lexicographic order, so a node's subtree is a contiguous leaf range:
        # leaf_ranges[t] = (first leaf, end leaf) (n_nodes, 2) of the nodes at depth t + 1.
        self.leaf_ranges: list[Tensor] = []
        for level, nodes in enumerate(node_of_row):
            ancestor = nodes[self.leaf_items]  # (N,) non-decreasing in leaf order
            every_node = torch.arange(self.keys[level].numel(), device=tuples.device)
            self.leaf_ranges.append(
                torch.stack([torch.searchsorted(ancestor, every_node), torch.searchsorted(ancestor, every_node, right=True)], dim=1)
            )

    @property
    def device(self) -> torch.device:
        return self.leaf_items.device

    def to(self, device) -> "PrefixTrie":
        """Move the trie's tensors to ``device`` (in place); returns self."""
        self.keys = [k.to(device) for k in self.keys]
        self.leaf_ranges = [r.to(device) for r in self.leaf_ranges]
        self.leaf_items = self.leaf_items.to(device)
        self.leaf_of_item = self.leaf_of_item.to(device)
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

    def excluded_leaves(self, items: Tensor) -> Tensor:
        """Items to keep out of decoding, (B, E) rows with -1 as padding -> their sorted leaf
        nodes (B, E), padded with N (past every leaf); the form :meth:`allowed_from_nodes` takes."""
        items = items.long().to(self.device)
        if items.ndim != 2:
            raise ValueError(f"excluded items must be (B, E), got {tuple(items.shape)}")
        if ((items < -1) | (items >= self.n_items)).any():
            raise ValueError(f"excluded items must be in [0, {self.n_items}) or -1 (padding)")
        leaves = torch.where(items >= 0, self.leaf_of_item[items.clamp_min(0)], torch.full_like(items, self.n_items))
        leaves = leaves.sort(dim=1).values
        if leaves.shape[1] > 1:  # an item listed twice is excluded once
            repeated = torch.zeros_like(leaves, dtype=torch.bool)
            repeated[:, 1:] = leaves[:, 1:] == leaves[:, :-1]
            leaves = torch.where(repeated, torch.full_like(leaves, self.n_items), leaves).sort(dim=1).values
        return leaves

    def allowed_from_nodes(
        self, nodes: Tensor, depth: int, found: Optional[Tensor] = None, excluded_leaves: Optional[Tensor] = None
    ) -> Tensor:
        """Allowed next tokens of nodes (B,) at ``depth`` -> (B, V_depth) bool; rows where
        ``found`` is False are all False. With ``excluded_leaves`` (B, E) from
        :meth:`excluded_leaves`, a token is allowed only if some leaf below it is not excluded
        (so decoding never walks into a subtree whose items are all excluded)."""
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
        tokens = keys[child] - nodes[rows] * size
        if excluded_leaves is not None:
            if excluded_leaves.shape[0] != batch:
                raise ValueError(f"excluded_leaves has {excluded_leaves.shape[0]} rows, nodes {batch}")
            first, end = self.leaf_ranges[depth][child].T.contiguous()
            row_excluded = excluded_leaves.to(self.device)[rows]
            n_excluded = (
                torch.searchsorted(row_excluded, end.view(-1, 1)) - torch.searchsorted(row_excluded, first.view(-1, 1))
            ).squeeze(1)
            keep = end - first > n_excluded
            rows, tokens = rows[keep], tokens[keep]
        mask[rows, tokens] = True
        return mask

    def allowed_next(self, prefixes: Tensor, excluded_items: Optional[Tensor] = None) -> Tensor:
        """Allowed next tokens after each prefix: prefixes (B, t) -> (B, V_t) bool mask; an unknown
        prefix allows nothing. ``excluded_items`` (B, E) (-1 = padding) removes tokens whose
        items are all excluded."""
        nodes, found = self.walk(prefixes)
        excluded = None if excluded_items is None else self.excluded_leaves(excluded_items)
        return self.allowed_from_nodes(nodes, prefixes.shape[1], found, excluded)

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
