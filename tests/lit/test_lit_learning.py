"""Pre-training (Eq. 20) and the reward model (Eq. 21) learn on the tiny world: their loss on
held-out requests falls after a few dozen Adam steps."""
from __future__ import annotations

import lightning.pytorch as pl
import torch

from egakit.data.world import WorldDataModule
from egakit.model import EGAV1Config
from egakit.sim.io import load_world_meta
from egakit.training.losses import pretrain_loss, reward_model_loss
from egakit.lit import PretrainModule, RewardModule

STEPS = 25
LR = 3e-3


def _config() -> EGAV1Config:
    return EGAV1Config(d=16, n_heads=2, n_clusters=8, m=2, m_c=1, m_e=1, K=5, feature_emb_dim=4, id_buckets=4096,
                       ctr_mlp=(16, 8), eval_mlp=(16,), pay_mlp=(16,))


def _data(world, train_split: str) -> WorldDataModule:
    return WorldDataModule(
        str(world), batch_size=8, neg_samples=24, eval_mode="train", eval_batch_size=32, seed=0,
        splits={"train": train_split, "val": "test[:64]"},
    )


def _held_out_loss(module, dm: WorldDataModule, loss_of) -> float:
    module.eval()
    total = 0.0
    with torch.no_grad():
        batches = list(dm.val_dataloader())
        for batch in batches:
            total += float(loss_of(module, dm.fill_features(batch)))
    return total / len(batches)


def _fit(module, dm: WorldDataModule) -> None:
    trainer = pl.Trainer(
        max_steps=STEPS, logger=False, enable_checkpointing=False, limit_val_batches=0,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
    )
    trainer.fit(module, datamodule=dm)


def _pretrain_loss(module, batch):
    return pretrain_loss(module.model.encode(batch).ctr_logit, batch.labels, batch.label_mask)


def _reward_loss(module, batch):
    enc = module.model.encode(batch)
    logits = module.model.evaluate_logits(batch, batch.exposed_index, encoding=enc)
    return reward_model_loss(logits, batch.exposed_clicks, batch.label_mask.gather(1, batch.exposed_index))


def test_pretraining_loss_falls(lit_world):
    pl.seed_everything(0)
    meta = load_world_meta(lit_world)
    module = PretrainModule(_config(), vocab_sizes=meta["vocab"], num_slots=meta["K"], lr=LR, oracle_metrics=False)
    dm = _data(lit_world, "pretrain")
    dm.setup("fit")
    before = _held_out_loss(module, dm, _pretrain_loss)
    _fit(module, dm)
    after = _held_out_loss(module, dm, _pretrain_loss)
    assert after < 0.7 * before, (before, after)


def test_reward_model_loss_falls(lit_world, chain):
    pl.seed_everything(0)
    meta = load_world_meta(lit_world)
    module = RewardModule(
        _config(), vocab_sizes=meta["vocab"], num_slots=meta["K"], lr=LR, init_from=str(chain["pretrain"]),
        oracle_metrics=False,
    )
    module.load_init()
    dm = _data(lit_world, "posttrain")
    dm.setup("fit")
    before = _held_out_loss(module, dm, _reward_loss)
    _fit(module, dm)
    after = _held_out_loss(module, dm, _reward_loss)
    assert after < 0.7 * before, (before, after)


def test_literal_eq20_still_fits_the_position_effects_on_the_side(lit_world):
    """observation_bias=False: the encoder's gradient is Eq. 20's alone, yet the rates β (the
    critical prices' position effects) are fitted from the logs instead of staying at their init."""
    pl.seed_everything(0)
    meta = load_world_meta(lit_world)
    module = PretrainModule(_config(), vocab_sizes=meta["vocab"], num_slots=meta["K"], lr=LR, oracle_metrics=False,
                            observation_bias=False)
    dm = _data(lit_world, "pretrain")
    dm.setup("fit")
    batch = dm.fill_features(next(iter(dm.train_dataloader())))
    encoder = [p for name, p in module.model.named_parameters() if name.startswith("ctr_head")]
    total, scalars = module.training_loss(batch)
    assert "obs_fit_loss" in scalars
    got = torch.autograd.grad(total, encoder, retain_graph=True)
    want = torch.autograd.grad(_pretrain_loss(module, batch), encoder)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    rates_before = module.model.observation.rates().detach().clone()
    _fit(module, dm)
    moved = (module.model.observation.rates().detach() - rates_before).abs()
    assert float(moved[1:].max()) > 1e-3, moved
