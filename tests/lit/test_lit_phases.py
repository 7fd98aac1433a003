"""The four EGA-V1 phase modules through the `ega` CLI on the tiny world: each runs, each chains
from the previous phase's checkpoint, frozen modules stay frozen, checkpoints load safely and a
wrong init_from is refused with the reason."""
from __future__ import annotations

import torch
import pytest

from egakit.checkpoint import ENCODER, EVALUATOR, GENERATOR, PAYMENT, CheckpointError, read_checkpoint
from egakit.lightning_cli import run_lightning_cli
from egakit.model import EGAV1Config
from egakit.sim.io import load_world_meta
from egakit.training.lr_schedule import LRSchedule
from egakit.lit import PaymentModule, PretrainModule, RLAFModule, RewardModule
from lit_helpers import CHAIN_STEPS, PHASES, phase_args, working_directory

PREVIOUS = {"reward": "pretrain", "rlaf": "reward", "payment": "rlaf"}
#: phase → (module groups it trains, groups that must come out of it exactly as they went in)
TRAINS = {
    "pretrain": (ENCODER, ()),
    "reward": (EVALUATOR, ENCODER),
    "rlaf": (GENERATOR, ENCODER + EVALUATOR),
    "payment": (PAYMENT, ENCODER + EVALUATOR + GENERATOR),
}


def tiny_config(**overrides) -> EGAV1Config:
    """The tiny configs' model section."""
    base = dict(d=16, n_heads=2, n_clusters=8, m=2, m_c=1, m_e=1, K=5, feature_emb_dim=4, id_buckets=4096,
                ctr_mlp=(16, 8), eval_mlp=(16,), pay_mlp=(16,))
    base.update(overrides)
    return EGAV1Config(**base)


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("phase", PHASES)
def test_phase_fast_dev_run(phase, lit_world, chain, tmp_path):
    extra = ["--trainer.fast_dev_run=2"]
    if phase in PREVIOUS:
        extra.append(f"--model.init_args.init_from={chain[PREVIOUS[phase]]}")
    with working_directory(tmp_path):
        cli = run_lightning_cli(phase_args(phase, lit_world, *extra))
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]), metrics
    expected_val = {"pretrain": "val/auc", "reward": "val/auc", "rlaf": "val/erpm_bid", "payment": "val/erpm"}[phase]
    assert expected_val in metrics, sorted(metrics)
    if phase == "payment":
        assert float(metrics["val/ir_violations"]) == 0.0
    if phase == "pretrain":  # the oracle's view beside the logged labels' one
        assert 0.0 <= float(metrics["val/true_auc"]) <= 1.0 and "val/true_ectr_gsp" in metrics


@pytest.mark.parametrize("phase", PHASES)
def test_chain_checkpoints_load_weights_only_and_record_provenance(phase, chain):
    ckpt = torch.load(chain[phase], map_location="cpu", weights_only=True)
    meta = ckpt["egakit"]
    assert meta["phase"] == phase and meta["kind"] == "ega_v1"
    trained = set(meta["trained"])
    done = [p for name in PHASES[: PHASES.index(phase) + 1] for p in TRAINS[name][0]]
    assert trained == set(done)
    assert isinstance(ckpt["hyper_parameters"]["model"], dict)
    assert meta["world"]["preset"] == "tiny"
    assert ckpt["global_step"] == CHAIN_STEPS  # the fixed-path checkpoint holds the final state


@pytest.mark.parametrize("phase", PHASES[1:])
def test_frozen_modules_do_not_change_and_trained_ones_do(phase, chain):
    """Parameters *and* buffers (Dice running statistics) of frozen modules leave the phase
    bit-identical to the previous phase's checkpoint; the trained module moved."""
    before = read_checkpoint(chain[PREVIOUS[phase]])["state_dict"]
    after = read_checkpoint(chain[phase])["state_dict"]
    trains, frozen = TRAINS[phase]
    frozen_keys = [k for k in after if _under(k, frozen)]
    assert frozen_keys
    changed = [k for k in frozen_keys if not torch.equal(before[k], after[k])]
    assert not changed, f"frozen tensors changed in the {phase} phase: {changed[:5]}"
    trained_keys = [k for k in after if _under(k, trains) and after[k].is_floating_point()]
    assert any(not torch.equal(before[k], after[k]) for k in trained_keys), f"{phase} trained nothing"


def _module(cls, world, **kwargs):
    meta = load_world_meta(world)
    return cls(tiny_config(), vocab_sizes=meta["vocab"], num_slots=meta["K"], **kwargs)


def test_init_from_chains_and_restores_required_modules(lit_world, chain):
    module = _module(RLAFModule, lit_world, init_from=str(chain["reward"]))
    loaded = module.load_init()
    assert set(loaded.restored) == set(ENCODER + EVALUATOR)
    state = read_checkpoint(chain["reward"])["state_dict"]
    own = module.state_dict()
    for key in own:
        if _under(key, ENCODER + EVALUATOR):
            assert torch.equal(own[key], state[key]), key


def test_init_from_without_a_trained_module_is_refused_naming_it(lit_world, chain):
    module = _module(RLAFModule, lit_world, init_from=str(chain["pretrain"]))
    with pytest.raises(CheckpointError, match=r"no trained model\.evaluator.*reward phase"):
        module.load_init()
    payment = _module(PaymentModule, lit_world, init_from=str(chain["reward"]))
    with pytest.raises(CheckpointError, match=r"model\.generator"):
        payment.load_init()


def test_init_from_another_model_config_is_refused_with_the_reason(lit_world, chain):
    meta = load_world_meta(lit_world)
    other = RewardModule(tiny_config(d=32), vocab_sizes=meta["vocab"], num_slots=meta["K"], init_from=str(chain["pretrain"]))
    with pytest.raises(CheckpointError, match=r"model\.d: checkpoint 16, this run 32"):
        other.load_init()


def test_init_from_a_missing_or_unsafe_file_is_refused(lit_world, chain, tmp_path):
    module = _module(RewardModule, lit_world, init_from=str(tmp_path / "nope.ckpt"))
    with pytest.raises(CheckpointError, match="no such file"):
        module.load_init()
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "egakit": object.__new__(EGAV1Config)}, unsafe)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        module.load_init(str(unsafe))


def test_a_phase_that_needs_init_from_says_so(lit_world):
    with pytest.raises(ValueError, match="needs init_from"):
        _module(RewardModule, lit_world).load_init()


def test_frozen_modules_stay_in_eval_mode_through_train(lit_world):
    module = _module(RLAFModule, lit_world)
    module.train()
    for prefix in ENCODER + EVALUATOR + PAYMENT:
        sub = module.get_submodule(prefix)
        assert not any(m.training for m in sub.modules()), prefix
        assert not any(p.requires_grad for p in sub.parameters()), prefix
    assert module.model.generator.training
    assert all(p.requires_grad for p in module.model.generator.parameters())
    optimised = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert optimised == {id(p) for p in module.model.generator.parameters()}


def test_world_sizes_must_be_given_and_match(lit_world):
    meta = load_world_meta(lit_world)
    with pytest.raises(ValueError, match="vocab_sizes is None"):
        PretrainModule(tiny_config(), num_slots=5)
    with pytest.raises(ValueError, match="num_slots is None"):
        PretrainModule(tiny_config(), vocab_sizes=meta["vocab"])
    with pytest.raises(ValueError, match="num_slots=4 .* model.K=5"):
        PretrainModule(tiny_config(), vocab_sizes=meta["vocab"], num_slots=4)


def test_a_module_built_in_python_saves_a_weights_only_checkpoint(lit_world, tmp_path):
    """Outside the CLI the hyper-parameters hold the EGAV1Config dataclass; it is saved as a dict."""
    module = _module(PretrainModule, lit_world)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": {"model": tiny_config(), "lr": 1e-3}}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "x.ckpt")
    loaded = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert loaded["hyper_parameters"]["model"]["d"] == 16
    assert PretrainModule(loaded["hyper_parameters"]["model"], vocab_sizes=load_world_meta(lit_world)["vocab"], num_slots=5)


def test_rerunning_a_phase_overwrites_its_fixed_checkpoint_path(lit_world, tmp_path):
    """The next phase reads runs/.../<phase>/last.ckpt: a second run must replace it, not write
    last-v1.ckpt beside a stale one."""
    with working_directory(tmp_path):
        for steps in (1, 2):
            run_lightning_cli(phase_args("pretrain", lit_world, f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0"))
    folder = tmp_path / "runs" / "tiny" / "ckpt" / "pretrain"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt"]  # beside it: MODEL_CARD.md, config.yaml
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2


def test_a_cross_feature_variant_gets_its_vocabulary_sizes_from_the_world(lit_world, tmp_path):
    """`ega demo --full`'s "+ CF" ablation: the CLI fills cross_vocab_sizes as it fills vocab_sizes."""
    with working_directory(tmp_path):
        run_lightning_cli(phase_args(
            "pretrain", lit_world, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
            "--model.init_args.model.use_cross_features=true", "--data.init_args.cross_features=true",
        ))
    ckpt = torch.load(tmp_path / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt", weights_only=True)
    assert any(key.startswith("model.embedding.cross.") for key in ckpt["state_dict"])


def test_a_cosine_schedule_spans_max_steps_and_is_checkpointed(lit_world, tmp_path):
    """`lr_schedule` from the CLI: the rate follows LRSchedule.factor per optimiser step, the
    scheduler's state is in the checkpoint (exact resume) and the hparams load weights-only."""
    steps = 4
    with working_directory(tmp_path):
        run_lightning_cli(phase_args(
            "pretrain", lit_world, f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
            "--model.init_args.lr_schedule.kind=cosine", "--model.init_args.lr_schedule.warmup_steps=1",
            "--model.init_args.lr_schedule.min_ratio=0.1",
        ))
    ckpt = torch.load(tmp_path / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["lr_schedule"] == {"kind": "cosine", "warmup_steps": 1, "min_ratio": 0.1}
    (scheduler,) = ckpt["lr_schedulers"]
    assert scheduler["last_epoch"] == steps
    base = ckpt["hyper_parameters"]["lr"]
    expected = base * LRSchedule("cosine", warmup_steps=1, min_ratio=0.1).factor(steps, steps)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(expected)
    assert expected == pytest.approx(0.1 * base)


def test_the_default_schedule_is_constant(lit_world):
    module = _module(PretrainModule, lit_world)
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)
