"""Prefix trie over id tuples and constrained decoding: compared with brute-force references."""
import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egakit.v2 import PrefixTrie, SemanticIds, constrained_beam_search, constrained_greedy

#: Largest batch and beam count the property tests draw.
MAX_BATCH, MAX_BEAMS = 4, 12
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def distinct_tuples(seed: int, n: int, level_sizes: tuple[int, ...]) -> torch.Tensor:
    """Up to n distinct random tuples (N, L) with token l in [0, level_sizes[l]), in random
    (not sorted) row order."""
    g = torch.Generator().manual_seed(seed)
    columns = [torch.randint(v, (n,), generator=g) for v in level_sizes]
    distinct = torch.unique(torch.stack(columns, dim=1), dim=0)
    return distinct[torch.randperm(distinct.shape[0], generator=g)]


def brute_force_mask(tuples: torch.Tensor, prefixes: torch.Tensor, size: int, excluded=None) -> torch.Tensor:
    """Allowed next tokens by scanning every tuple (item) in Python, skipping row b's excluded items."""
    t = prefixes.shape[1]
    rows = [tuple(r) for r in tuples.tolist()]
    mask = torch.zeros(prefixes.shape[0], size, dtype=torch.bool)
    for b, prefix in enumerate(prefixes.tolist()):
        skip = set() if excluded is None else set(excluded[b].tolist())
        for item, row in enumerate(rows):
            if list(row[:t]) == prefix and item not in skip:
                mask[b, row[t]] = True
    return mask


def random_exclusions(g: torch.Generator, batch: int, n_items: int, width: int) -> torch.Tensor:
    """(batch, width) random item rows to exclude, with -1 padding and repeats."""
    return torch.randint(-1, n_items, (batch, width), generator=g)


tries = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(1, 60),  # items drawn (before de-duplication)
    st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),  # level sizes
)


@PROPERTY_SETTINGS
@given(spec=tries, n_prefixes=st.integers(1, 12), depth_seed=st.integers(0, 10**6))
def test_trie_mask_equals_brute_force(spec, n_prefixes, depth_seed):
    seed, n, sizes = spec
    tuples = distinct_tuples(seed, n, sizes)
    trie = PrefixTrie(tuples, sizes)
    g = torch.Generator().manual_seed(depth_seed)
    t = int(torch.randint(len(sizes), (1,), generator=g))
    # half the prefixes exist, the other half are random (most do not exist; some tokens out of range)
    existing = tuples[torch.randint(tuples.shape[0], (n_prefixes,), generator=g), :t]
    random = torch.stack([torch.randint(-1, v + 1, (n_prefixes,), generator=g) for v in sizes[:t]], dim=1) if t else existing
    prefixes = torch.cat([existing, random.reshape(n_prefixes, t)])
    assert torch.equal(trie.allowed_next(prefixes), brute_force_mask(tuples, prefixes, sizes[t]))


@PROPERTY_SETTINGS
@given(spec=tries, n_prefixes=st.integers(1, 8), width=st.integers(1, 30), draw_seed=st.integers(0, 10**6))
def test_trie_mask_with_excluded_items_equals_brute_force(spec, n_prefixes, width, draw_seed):
    seed, n, sizes = spec
    tuples = distinct_tuples(seed, n, sizes)
    trie = PrefixTrie(tuples, sizes)
    g = torch.Generator().manual_seed(draw_seed)
    t = int(torch.randint(len(sizes), (1,), generator=g))
    prefixes = tuples[torch.randint(tuples.shape[0], (n_prefixes,), generator=g), :t]
    excluded = random_exclusions(g, n_prefixes, tuples.shape[0], width)
    expected = brute_force_mask(tuples, prefixes, sizes[t], excluded)
    assert torch.equal(trie.allowed_next(prefixes, excluded_items=excluded), expected)


def test_a_subtree_of_excluded_items_is_pruned_at_the_root():
    trie = PrefixTrie(torch.tensor([[0, 0], [1, 0], [0, 1]]), (2, 2))
    excluded = torch.tensor([[0, 2, -1], [0, 0, -1]])  # row 0: both items under token 0; row 1: item 0 twice
    assert trie.allowed_next(torch.zeros(2, 0, dtype=torch.long), excluded_items=excluded).tolist() == [[False, True], [True, True]]
    assert trie.allowed_next(torch.tensor([[0], [0]]), excluded_items=excluded).tolist() == [[False, False], [False, True]]
    with pytest.raises(ValueError, match=r"excluded items must be in \[0, 3\)"):
        trie.allowed_next(torch.tensor([[0]]), excluded_items=torch.tensor([[3]]))


def test_trie_lookup_finds_every_row_and_nothing_else():
    sizes = (4, 3, 5)
    tuples = distinct_tuples(0, 40, sizes)
    trie = PrefixTrie(tuples, sizes)
    items, found = trie.lookup(tuples)
    assert found.all() and torch.equal(items, torch.arange(tuples.shape[0]))
    present = {tuple(r) for r in tuples.tolist()}
    absent = torch.tensor([t for t in itertools.product(*map(range, sizes)) if t not in present])
    items, found = trie.lookup(absent)
    assert not found.any() and (items == -1).all()


def test_trie_rejects_duplicates_and_out_of_range_tokens():
    with pytest.raises(ValueError, match=r"rows 0 and 2 hold the same tuple \(1, 2\)"):
        PrefixTrie(torch.tensor([[1, 2], [0, 2], [1, 2]]), (3, 3))
    with pytest.raises(ValueError, match=r"token 3 of row 1 at level 1 is outside \[0, 3\)"):
        PrefixTrie(torch.tensor([[1, 2], [0, 3]]), (3, 3))


def uniform_logits(seed: int, sizes):
    """One callable per level: random logits (B, k, V_l) for whatever beams it is given."""
    g = torch.Generator().manual_seed(seed)
    tables = [torch.randn(MAX_BATCH, MAX_BEAMS, v, generator=g) * 3 for v in sizes]

    def at_level(level):
        return lambda prefixes: tables[level][: prefixes.shape[0], : prefixes.shape[1]]

    return [at_level(level) for level in range(len(sizes))]


def tuple_log_prob(logits_fns, batch_row: int, tuple_: tuple) -> float:
    """Score of one full tuple under the callables (each level's logits depend on the beam slot,
    so the reference evaluates them on a single-beam prefix)."""
    score = 0.0
    for level, token in enumerate(tuple_):
        prefix = torch.tensor(tuple_[:level]).view(1, 1, level).expand(batch_row + 1, 1, level)
        score += float(torch.log_softmax(logits_fns[level](prefix)[batch_row, 0], dim=-1)[token])
    return score


@PROPERTY_SETTINGS
@given(
    spec=tries,
    logit_seed=st.integers(0, 10**6),
    beam_size=st.integers(1, MAX_BEAMS),
    batch=st.integers(1, MAX_BATCH),
    exclusion_width=st.integers(0, 20),
)
def test_constrained_decoding_only_returns_existing_items(spec, logit_seed, beam_size, batch, exclusion_width):
    seed, n, sizes = spec
    tuples = distinct_tuples(seed, n, sizes)
    trie = PrefixTrie(tuples, sizes)
    excluded = None
    if exclusion_width:
        excluded = random_exclusions(torch.Generator().manual_seed(logit_seed), batch, tuples.shape[0], exclusion_width)
    result = constrained_beam_search(trie, uniform_logits(logit_seed, sizes), batch, beam_size, exclude_items=excluded)
    k = result.items.shape[1]
    assert result.tuples.shape == (batch, k, len(sizes))
    for b in range(batch):
        banned = set() if excluded is None else set(excluded[b].tolist()) - {-1}
        assert int(result.valid[b].sum()) == min(beam_size, tuples.shape[0] - len(banned))
        assert not banned & set(result.items[b].tolist())
        for j in range(k):
            if result.valid[b, j]:
                item = int(result.items[b, j])
                assert 0 <= item < tuples.shape[0]
                assert torch.equal(result.tuples[b, j], tuples[item])  # an existing tuple, its own item
            else:
                assert result.items[b, j] == -1 and result.scores[b, j] == -torch.inf
        valid_items = result.items[b][result.valid[b]]
        assert valid_items.unique().numel() == valid_items.numel()  # distinct beams
        scores = result.scores[b][result.valid[b]]
        assert torch.all(scores[:-1] >= scores[1:])  # best first


def test_beam_search_with_enough_beams_ranks_every_item_exactly():
    sizes = (3, 4, 2)
    tuples = distinct_tuples(3, 20, sizes)
    trie = PrefixTrie(tuples, sizes)
    g = torch.Generator().manual_seed(0)
    # logits that depend on the prefix (not on the beam slot), as a real decoder's would
    weights = [torch.randn(max(level, 1), v, generator=g) for level, v in enumerate(sizes)]

    def at_level(level):
        def fn(prefixes):
            features = prefixes.float() if level else torch.ones(*prefixes.shape[:2], 1)
            return torch.sin(features @ weights[level] * 3.0)

        return fn

    fns = [at_level(level) for level in range(len(sizes))]
    result = constrained_beam_search(trie, fns, batch_size=1, beam_size=tuples.shape[0])
    reference = sorted(((tuple_log_prob(fns, 0, tuple(t)), i) for i, t in enumerate(tuples.tolist())), reverse=True)
    assert result.valid.all()
    assert result.items[0].tolist() == [i for _, i in reference]
    torch.testing.assert_close(result.scores[0], torch.tensor([s for s, _ in reference]))
    greedy = constrained_greedy(trie, fns, batch_size=1)
    # greedy takes the best allowed token level by level
    prefix = []
    for level, size in enumerate(sizes):
        allowed = trie.allowed_next(torch.tensor([prefix], dtype=torch.long).view(1, level))[0]
        logits = fns[level](torch.tensor(prefix, dtype=torch.long).view(1, 1, level))[0, 0]
        prefix.append(int(torch.where(allowed, logits, torch.tensor(-torch.inf)).argmax()))
    assert greedy.tuples[0, 0].tolist() == prefix


def test_paper_size_beam_search_shapes():
    """N_S = 64 beams over a 3 x 1024 (+ suffix) vocabulary and 5,000 items, batch 4."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(1024, (5000, 3), generator=g)
    codes[:, 0] %= 32  # a skewed first level, as trained codebooks are
    ids = SemanticIds.from_codes(codes, 1024)
    fns = [lambda p, v=v: torch.randn(*p.shape[:2], v, generator=g) for v in ids.level_sizes]
    result = constrained_beam_search(ids.trie, fns, batch_size=4, beam_size=64)
    assert result.valid.all() and result.items.shape == (4, 64)
    assert torch.equal(ids.encode(result.items.reshape(-1)), result.tuples.reshape(-1, 4))


def test_logits_of_the_wrong_shape_are_named():
    trie = PrefixTrie(torch.tensor([[0, 1], [1, 0]]), (2, 2))
    with pytest.raises(ValueError, match=r"level 0 logits: expected shape \(3, 1, 2\)"):
        constrained_beam_search(trie, [lambda p: torch.zeros(3, 1, 5), lambda p: torch.zeros(3, 1, 2)], 3, 2)
