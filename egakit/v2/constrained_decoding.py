"""Beam search and greedy decoding of semantic ids restricted to a :class:`PrefixTrie`.

A model supplies one logits callable per token level: ``level_logits[t](prefixes)`` takes the
beams' prefixes (B, k, t) and returns logits (B, k, V_t) for token t. Tokens outside the trie are
masked before the top-k, so every returned tuple belongs to an item (docs/design.md §9: no beam
ever holds an item that does not exist). A tuple's score is the sum of the model's log-softmax
probabilities of its tokens (over the full vocabulary, not renormalised over the allowed tokens).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from egakit.v2.trie import PrefixTrie

LevelLogits = Callable[[Tensor], Tensor]


@dataclass
class BeamSearchResult:
    """k beams per batch row, best first.

    tuples: (B, k, L) int64, -1 on invalid beams. items: (B, k) int64 rows, -1 on invalid beams.
    scores: (B, k) sum of log-probabilities, -inf on invalid beams.
    valid: (B, k) bool; fewer than k beams are valid only when the trie holds fewer than k
    items that are not excluded (or the logits put -inf on every remaining continuation).
    """

    tuples: Tensor
    items: Tensor
    scores: Tensor
    valid: Tensor


def constrained_beam_search(
    trie: PrefixTrie,
    level_logits: Sequence[LevelLogits],
    batch_size: int,
    beam_size: int,
    exclude_items: Optional[Tensor] = None,
) -> BeamSearchResult:
    """Beam search over the trie's L levels with ``beam_size`` beams per batch row.

    ``exclude_items`` (B, E) item rows (-1 = padding) that row b must not return, e.g. the ads
    already placed in its list; subtrees holding only excluded items are pruned at every level.
    """
    if len(level_logits) != trie.depth:
        raise ValueError(f"need one logits callable per level ({trie.depth}), got {len(level_logits)}")
    if beam_size < 1 or batch_size < 0:
        raise ValueError(f"beam_size must be >= 1 and batch_size >= 0, got {beam_size}, {batch_size}")
    device = trie.device
    prefixes = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    nodes = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, device=device)
    alive = torch.ones(batch_size, 1, dtype=torch.bool, device=device)
    excluded = None
    if exclude_items is not None:
        if exclude_items.shape[0] != batch_size:
            raise ValueError(f"exclude_items has {exclude_items.shape[0]} rows, batch_size is {batch_size}")
        excluded = trie.excluded_leaves(exclude_items)
    for depth, logits_fn in enumerate(level_logits):
        beams, size = prefixes.shape[1], trie.level_sizes[depth]
        logits = logits_fn(prefixes)
        if tuple(logits.shape) != (batch_size, beams, size):
            raise ValueError(f"level {depth} logits: expected shape {(batch_size, beams, size)}, got {tuple(logits.shape)}")
        if torch.isnan(logits).any():
            raise ValueError(f"level {depth} logits contain NaN")
        log_probs = torch.log_softmax(logits.float().to(device), dim=-1)
        beam_excluded = None if excluded is None else excluded.repeat_interleave(beams, dim=0)
        allowed = trie.allowed_from_nodes(nodes.reshape(-1), depth, alive.reshape(-1), beam_excluded).view(batch_size, beams, size)
        candidates = torch.where(allowed, scores.unsqueeze(-1) + log_probs, torch.full_like(log_probs, -torch.inf))
        k = min(beam_size, beams * size)
        scores, flat = candidates.view(batch_size, beams * size).topk(k, dim=1)
        parent, token = flat // size, flat % size
        alive = torch.isfinite(scores)
        prefixes = torch.cat([prefixes.gather(1, parent.unsqueeze(-1).expand(-1, -1, depth)), token.unsqueeze(-1)], dim=2)
        child, found = trie.step(nodes.gather(1, parent).reshape(-1), depth, token.reshape(-1), alive.reshape(-1))
        nodes, alive = child.view(batch_size, k), found.view(batch_size, k)
    items = trie.items_of(nodes.reshape(-1), alive.reshape(-1)).view(nodes.shape)
    prefixes = torch.where(alive.unsqueeze(-1), prefixes, torch.full_like(prefixes, -1))
    scores = torch.where(alive, scores, torch.full_like(scores, -torch.inf))
    return BeamSearchResult(tuples=prefixes, items=items, scores=scores, valid=alive)


def constrained_greedy(
    trie: PrefixTrie, level_logits: Sequence[LevelLogits], batch_size: int, exclude_items: Optional[Tensor] = None
) -> BeamSearchResult:
    """Greedy decoding (beam size 1) restricted to the trie: (B, 1) items."""
    return constrained_beam_search(trie, level_logits, batch_size, beam_size=1, exclude_items=exclude_items)
