"""Semantic ids with a collision suffix: unique tuples, round trips, tables saved and loaded."""
import pytest
import torch

from egakit.v2 import SemanticIds, UnknownSemanticIdError, collision_suffix
from v2_helpers import CODEBOOK_SIZE, N_LEVELS


def random_codes(n: int, levels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Codes with many collisions (small codebooks)."""
    return torch.randint(size, (n, levels), generator=torch.Generator().manual_seed(seed))


def test_suffix_numbers_colliding_items_in_item_order():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [0, 1], [1, 2], [0, 0]])
    assert collision_suffix(codes).tolist() == [0, 0, 1, 0, 2, 1]
    ids = SemanticIds.from_codes(codes, codebook_size=3)
    assert ids.level_sizes == (3, 3, 3)
    assert ids.ids[4].tolist() == [1, 2, 2]
    assert ids.collision_rate == pytest.approx(3 / 6)


@pytest.mark.parametrize("n,levels,size", [(500, 2, 4), (2000, 3, 8), (1, 1, 1)])
def test_every_item_round_trips_and_no_two_items_share_a_tuple(n, levels, size):
    ids = SemanticIds.from_codes(random_codes(n, levels, size), size)
    items = torch.arange(n)
    tuples = ids.encode(items)
    assert tuples.shape == (n, levels + 1)
    assert torch.unique(tuples, dim=0).shape[0] == n
    assert torch.equal(ids.decode(tuples), items)
    assert torch.equal(tuples[:, :levels], random_codes(n, levels, size))  # the codes are kept
    assert ids.to_dict() == {tuple(t): i for i, t in enumerate(tuples.tolist())}


def test_trained_tokenizer_ids_round_trip(trained_tokenizer):
    codes = trained_tokenizer.model.tokenize(trained_tokenizer.mixture.x)
    ids = SemanticIds.from_codes(codes, CODEBOOK_SIZE)
    items = torch.randperm(codes.shape[0], generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids.decode(ids.encode(items)), items)
    assert ids.n_levels == N_LEVELS and torch.unique(ids.ids, dim=0).shape[0] == codes.shape[0]


def test_unknown_tuple_is_a_clear_error():
    ids = SemanticIds.from_codes(torch.tensor([[0, 1], [1, 1]]), codebook_size=2)
    queries = torch.tensor([[0, 1, 0], [1, 0, 0]])
    with pytest.raises(UnknownSemanticIdError, match=r"\(1, 0, 0\) \(batch row 1\) belongs to no item") as error:
        ids.decode(queries)
    assert error.value.row == 1 and error.value.tuple == (1, 0, 0)
    assert ids.decode(queries, strict=False).tolist() == [0, -1]
    # out-of-vocabulary tokens are unknown too, never aliased to another node
    assert ids.decode(torch.tensor([[0, 3, 0], [-1, 1, 0], [0, 1, 1]]), strict=False).tolist() == [-1, -1, -1]


def test_encode_rejects_unknown_items():
    ids = SemanticIds.from_codes(torch.tensor([[0], [1]]), codebook_size=2)
    with pytest.raises(IndexError, match=r"item 2 \(batch row 1\)"):
        ids.encode(torch.tensor([0, 2]))


def test_suffix_size_too_small_is_refused():
    with pytest.raises(ValueError, match="3 items share one code tuple"):
        SemanticIds.from_codes(torch.zeros(3, 2, dtype=torch.long), codebook_size=4, suffix_size=2)


def test_tables_save_and_load_with_weights_only(tmp_path):
    ids = SemanticIds.from_codes(random_codes(300, 3, 5), 5, suffix_size=16)
    path = ids.save(tmp_path / "ckpt" / "semantic_ids.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format_version", "ids", "level_sizes"} and all(isinstance(v, torch.Tensor) for v in raw.values())
    loaded = SemanticIds.load(path)
    assert torch.equal(loaded.ids, ids.ids) and loaded.level_sizes == ids.level_sizes == (5, 5, 5, 16)
    assert torch.equal(loaded.decode(ids.ids), torch.arange(300))


def test_load_refuses_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt: not semantic-id tables, missing \['format_version', 'ids', 'level_sizes'\]"):
        SemanticIds.load(tmp_path / "other.pt")
    state = SemanticIds.from_codes(torch.tensor([[0]]), 1).state_dict()
    state["format_version"] = torch.tensor(99)
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format 99"):
        SemanticIds.load(tmp_path / "future.pt")
