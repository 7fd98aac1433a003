"""SASRec, DSSM and DIN on real tiny-world batches: shapes, padding invariance, causality,
cross-feature handling, and checkpoint round trips through load_stage_model."""
from pathlib import Path

import pytest
import torch

from egakit.data.world import WorldDataModule
from egakit.baselines import (
    DIN,
    DINConfig,
    DSSM,
    DSSMConfig,
    SASRec,
    SASRecConfig,
    build_stage_model,
    load_stage_model,
    resolve_cross_vocab_sizes,
)
from egakit.checkpoint import CheckpointError
from egakit.sim.io import load_world_meta


@pytest.fixture(scope="module")
def world(tiny_world):
    meta = load_world_meta(tiny_world)
    dm = WorldDataModule(str(tiny_world), batch_size=4, neg_samples=40, cross_features=True, eval_batch_size=3, shuffle=False)
    dm.setup("fit")
    train = dm.fill_features(next(iter(dm.train_dataloader())))
    full = dm.fill_features(next(iter(dm.test_dataloader())))
    return meta["vocab"], train, full


def small_models(vocab):
    torch.manual_seed(0)
    return {
        "recall": SASRec(SASRecConfig(d=16, n_heads=2, n_layers=2, emb_dim=4, max_len=50, dropout=0.0), vocab),
        "prerank": DSSM(DSSMConfig(d=16, emb_dim=4, tower_hidden=(16,), out_dim=8), vocab),
        "rank": DIN(DINConfig(d=8, emb_dim=4, attention_hidden=(8,), mlp_hidden=(16,), cand_chunk=5), vocab, resolve_cross_vocab_sizes(vocab)),
    }


def pad(batch, extra):
    b = batch.batch_size

    def grow(t, fill):
        return torch.cat([t, torch.full((b, extra, *t.shape[2:]), fill, dtype=t.dtype)], dim=1)

    return batch.replace(
        cand_ids=grow(batch.cand_ids, -1), cand_rows=grow(batch.cand_rows, 0), cand_mask=grow(batch.cand_mask, False),
        bids=grow(batch.bids, 0.0), labels=grow(batch.labels, 0.0), label_mask=grow(batch.label_mask, False),
        exposed_slot=grow(batch.exposed_slot, -1), cand_feats=grow(batch.cand_feats, 1), cross_feats=grow(batch.cross_feats, 1),
    )


def test_every_stage_scores_every_candidate_and_trains(world):
    vocab, train, full = world
    for stage, model in small_models(vocab).items():
        for batch in (train, full):
            scores = model(batch)
            assert scores.shape == batch.cand_ids.shape and bool(torch.isfinite(scores).all()), stage
        model(train)[train.cand_mask].sum().backward()
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()), stage


def test_scores_do_not_depend_on_padding(world):
    vocab, _, full = world
    padded = pad(full, 7)
    for stage, model in small_models(vocab).items():
        model.eval()
        a, b = model(full), model(padded)[:, : full.num_candidates]
        assert torch.allclose(a[full.cand_mask], b[full.cand_mask], atol=1e-5), stage


def test_din_evaluates_in_chunks_exactly(world):
    vocab, _, full = world
    model = small_models(vocab)["rank"].eval()
    chunked = model(full)
    model.config.cand_chunk = 10_000
    assert torch.allclose(chunked, model(full), atol=1e-6)


def test_sasrec_is_causal(world):
    vocab, train, _ = world
    model = small_models(vocab)["recall"].eval()
    tokens = model.embedding(train)
    states, _ = model.sequence_states(tokens.e_bhv, train.bhv_mask)
    cut = 3
    changed = tokens.e_bhv.clone()
    changed[:, cut + 1 :] += 1.0  # the future of position `cut`
    states2, _ = model.sequence_states(changed, train.bhv_mask)
    assert torch.allclose(states[:, : cut + 1], states2[:, : cut + 1], atol=1e-5)


def test_din_cross_features(world):
    vocab, train, _ = world
    with_cf = small_models(vocab)["rank"]
    with pytest.raises(ValueError, match="cross_features"):
        with_cf(train.replace(cross_feats=None))
    without = DIN(DINConfig(d=8, emb_dim=4, attention_hidden=(8,), mlp_hidden=(16,), use_cross_features=False), vocab).eval()
    assert torch.equal(without(train), without(train.replace(cross_feats=None)))
    with pytest.raises(ValueError, match="cross_vocab_sizes"):
        DIN(DINConfig(), vocab, None)


def test_build_stage_model_from_a_mapping(world):
    vocab, train, _ = world
    model = build_stage_model("rank", {"d": 8, "emb_dim": 4, "attention_hidden": [8], "mlp_hidden": [16], "unknown": 1}, vocab)
    assert isinstance(model, DIN) and model.cross is not None
    with pytest.raises(ValueError, match="stage must be one of"):
        build_stage_model("auction", {}, vocab)


def test_load_stage_model_refuses_what_is_not_a_baseline(tmp_path: Path):
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}, "egakit": {"format": 1, "phase": "pretrain"}}, path)
    with pytest.raises(CheckpointError, match="not a baseline"):
        load_stage_model(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_stage_model(tmp_path / "missing.ckpt")
