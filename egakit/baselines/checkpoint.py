"""Build the cascade's stage models and load them from their Lightning checkpoints.

A baseline checkpoint (written by ``egakit.lit.baselines``) carries, next to the Lightning
``state_dict`` (the stage model under ``model.``), an ``"egakit"`` entry in the format of
:mod:`egakit.checkpoint`::

    {"format": 1, "kind": "baseline", "stage": "rank", "training": "mca" | "fs_ltr",
     "model_config": {...DINConfig...}, "vocab_sizes": {...}, "cross_vocab_sizes": [...] | None,
     "num_slots": K, "world": {...} | None}

so it loads with ``torch.load(weights_only=True)`` and is refused with the reason when it is not a
baseline checkpoint, another format or another world schema version.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from torch import nn

from egakit.baselines.common import check_stage, resolve_cross_vocab_sizes
from egakit.baselines.din import DIN, DINConfig
from egakit.baselines.dssm import DSSM, DSSMConfig
from egakit.baselines.sasrec import SASRec, SASRecConfig
from egakit.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_ATTR,
    CheckpointError,
    checkpoint_metadata,
    make_weights_only_safe,
    read_checkpoint,
)

BASELINE_KIND = "baseline"
TRAININGS = ("mca", "fs_ltr")

#: stage → (model class, config class)
STAGE_MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "recall": (SASRec, SASRecConfig),
    "prerank": (DSSM, DSSMConfig),
    "rank": (DIN, DINConfig),
}


def stage_config(stage: str, values: Mapping[str, Any]) -> Any:
    """The stage's config dataclass from ``values``; keys that are not its fields are ignored."""
    _, config_cls = STAGE_MODELS[check_stage(stage)]
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in values.items() if k in names})


def uses_cross_features(config: Any) -> bool:
    return bool(getattr(config, "use_cross_features", False))


def build_stage_model(
    stage: str, config: Any, vocab_sizes: Mapping[str, int], cross_vocab_sizes: Optional[Sequence[int]] = None
) -> nn.Module:
    """SASRec / DSSM / DIN for ``stage`` (``config`` a config dataclass or a mapping of its fields)."""
    model_cls, config_cls = STAGE_MODELS[check_stage(stage)]
    if not isinstance(config, config_cls):
        config = stage_config(stage, config)
    if stage == "rank":
        cross = resolve_cross_vocab_sizes(vocab_sizes, cross_vocab_sizes) if uses_cross_features(config) else None
        return model_cls(config, vocab_sizes, cross)
    return model_cls(config, vocab_sizes)


def stage_metadata(
    *,
    stage: str,
    training: str,
    config: Any,
    vocab_sizes: Mapping[str, int],
    cross_vocab_sizes: Optional[Sequence[int]],
    num_slots: Optional[int],
    world: Optional[Mapping[str, Any]],
) -> dict[str, Any]:
    """The ``"egakit"`` entry of a baseline checkpoint (module docstring)."""
    if training not in TRAININGS:
        raise ValueError(f"training must be one of {TRAININGS}, got {training!r}")
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": BASELINE_KIND,
        "stage": check_stage(stage),
        "training": training,
        "model_config": make_weights_only_safe(config),
        "vocab_sizes": {str(k): int(v) for k, v in vocab_sizes.items()},
        "cross_vocab_sizes": None if cross_vocab_sizes is None else [int(v) for v in cross_vocab_sizes],
        "num_slots": None if num_slots is None else int(num_slots),
        "world": None if world is None else dict(world),
    }


@dataclass
class LoadedStage:
    """A stage model restored from its checkpoint (in eval mode) and the checkpoint's metadata."""

    stage: str
    model: nn.Module
    metadata: dict[str, Any]
    path: str


def load_stage_model(path: str | Path, stage: Optional[str] = None) -> LoadedStage:
    """Load the baseline stage model saved at ``path``; ``stage`` (optional) must match."""
    ckpt = read_checkpoint(path)
    meta = checkpoint_metadata(ckpt, path)
    if meta.get("kind") != BASELINE_KIND:
        raise CheckpointError(path, f"not a baseline stage checkpoint (kind={meta.get('kind')!r}, phase={meta.get('phase')!r})")
    found = meta.get("stage")
    if found not in STAGE_MODELS:
        raise CheckpointError(path, f"unknown baseline stage {found!r}")
    if stage is not None and found != check_stage(stage):
        raise CheckpointError(path, f"holds the {found!r} stage, expected the {stage!r} stage")
    try:
        model = build_stage_model(found, dict(meta["model_config"]), meta["vocab_sizes"], meta.get("cross_vocab_sizes"))
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(path, f"invalid model_config for the {found!r} stage: {err}") from err
    prefix = MODEL_ATTR + "."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(path, f"weights do not fit the {found!r} model: {err}") from err
    if missing or unexpected:
        raise CheckpointError(path, f"weights do not fit the {found!r} model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return LoadedStage(stage=found, model=model, metadata=meta, path=str(path))
