"""WorldDataModule: sizes for the CLI, loaders per stage, features filled after transfer."""
from __future__ import annotations

import pytest
import torch
from jsonargparse import ArgumentParser

from egakit.data.world import DEFAULT_SPLITS, WorldDataModule, parse_split
from egakit.batch import RequestBatch
from egakit.features import CROSS_FEATURES
from egakit.sim import schema
from egakit.sim.io import load_world_meta

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")


def test_sizes_for_the_cli(tiny_world):
    meta = load_world_meta(tiny_world)
    dm = WorldDataModule(str(tiny_world))
    assert dm.num_slots == meta["K"]
    assert dm.vocab_sizes == meta["vocab"]
    assert dm.cross_vocab_sizes is None
    with_cf = WorldDataModule(str(tiny_world), cross_features=True)
    assert set(with_cf.vocab_sizes) == set(meta["vocab"]) | set(CROSS_FEATURES)
    assert with_cf.cross_vocab_sizes == [with_cf.vocab_sizes[name] for name in CROSS_FEATURES]


def test_init_args_parse_from_yaml_config(tiny_world):
    parser = ArgumentParser()
    parser.add_class_arguments(WorldDataModule, "data")
    cfg = parser.parse_object(
        {"data": {"world_dir": str(tiny_world), "batch_size": 4, "train_mode": "full", "splits": {"train": "posttrain"}}}
    )
    dm = parser.instantiate(cfg).data
    assert isinstance(dm, WorldDataModule) and dm.splits["train"] == "posttrain" and dm.splits["val"] == DEFAULT_SPLITS["val"]


def test_split_specs():
    assert parse_split("posttrain[:64]") == ("posttrain", 64) and parse_split("test") == ("test", None)
    for bad in ("valid", "test[3:]", "test[:x]"):
        with pytest.raises(ValueError, match="bad split"):
            parse_split(bad)


def test_unknown_splits_key(tiny_world):
    with pytest.raises(ValueError, match="unknown splits keys"):
        WorldDataModule(str(tiny_world), splits={"training": "pretrain"})


@pytest.mark.parametrize("cross", [False, True])
def test_on_after_batch_transfer_fills_features_from_store(tiny_world, cross):
    dm = WorldDataModule(str(tiny_world), batch_size=6, neg_samples=10, cross_features=cross, splits={"val": "test[:12]"})
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert isinstance(batch, RequestBatch) and batch.cand_feats is None
        filled = dm.on_after_batch_transfer(batch.to("cpu"), 0)
        feats = filled.cand_feats
        assert feats.shape == (*batch.cand_ids.shape, len(schema.AD_CATEGORICAL)) and feats.dtype == torch.int64
        want = torch.from_numpy(dm.ad_store.features(batch.cand_rows.numpy()))
        assert torch.equal(feats[batch.cand_mask], want[batch.cand_mask])
        # the features are those of the ids: category etc. of cand_ids in the store
        rows_from_ids = dm.ad_store.rows(batch.cand_ids[batch.cand_mask])
        assert torch.equal(feats[batch.cand_mask], dm.ad_store.gather(rows_from_ids))
        if cross:
            x = filled.cross_feats
            assert x.shape == (*batch.cand_ids.shape, len(CROSS_FEATURES))
            for j, name in enumerate(CROSS_FEATURES):
                assert int(x[..., j].max()) < dm.vocab_sizes[name] and int(x[..., j].min()) >= 0
            assert (x[~batch.cand_mask] == 0).all()
            same_cell = feats[..., schema.AD_CATEGORICAL.index("geo_cell")] == batch.user_feats[:, -1:]
            assert (x[..., 0][same_cell & batch.cand_mask] == 0).all()
        else:
            assert filled.cross_feats is None


def test_val_loader_full_mode_covers_slice(tiny_world):
    dm = WorldDataModule(str(tiny_world), batch_size=4, eval_batch_size=5, splits={"val": "posttrain[:23]"})
    dm.setup("validate")
    loader = dm.val_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    ids = [r for b in batches for r in b.request_id.tolist()]
    assert len(ids) == 23 == len(set(ids))
    sizes = dm.candidate_sets.sizes(torch.cat([b.candidate_set_id for b in batches]).numpy())
    assert sorted(torch.cat([b.cand_mask.sum(1) for b in batches]).tolist()) == sorted(sizes.tolist())
    again = [b.request_id.tolist() for b in loader]  # Lightning re-iterates one val loader every epoch
    assert again == [b.request_id.tolist() for b in batches]
    for b in loader:  # a pass cut short (limit_val_batches) does not move the next one
        break
    assert [b.request_id.tolist() for b in loader] == again
