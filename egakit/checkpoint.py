"""Checkpoints of the EGA-V1 training phases: safe loading, provenance, and ``init_from``.

Every phase (docs/design.md §5) saves a Lightning checkpoint with an extra ``"egakit"`` entry::

    {"format": CHECKPOINT_FORMAT, "kind": "ega_v1", "phase": "pretrain", "model_config": {...EGAV1Config...},
     "vocab_sizes": {...}, "cross_vocab_sizes": [...] | None, "num_slots": K,
     "trained": ["model.embedding", ...],          # modules some phase has trained so far
     "world": {"schema_version": 1, "preset": "small", "seed": 0} | None,
     "max_behaviours": L | None}                   # behaviours per user it was trained with

and only plain containers, numbers, strings and tensors, so it loads with
``torch.load(weights_only=True)`` (docs/design.md §12): :func:`make_weights_only_safe` turns the
hyper-parameters' dataclasses (an :class:`~egakit.model.config.EGAV1Config` when a module is built
in Python rather than by the CLI) into dicts before Lightning writes the file.

``trained`` is what makes "fails clearly if they are missing" meaningful: every phase builds the
whole :class:`~egakit.model.ega_v1.EGAV1`, so a pre-training checkpoint *contains* evaluator
weights — random ones. :func:`load_init` therefore asks for modules some phase has trained, and
names the phase that trains a missing one.

A checkpoint of another format version, another world schema version, another model
architecture or other vocabularies is refused with the reason (:class:`CheckpointError`).
"""
from __future__ import annotations

import dataclasses
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from egakit.model.config import EGAV1Config
from egakit.model.ega_v1 import EGAV1
from egakit.sim.schema import SCHEMA_VERSION

CHECKPOINT_FORMAT = 1
METADATA_KEY = "egakit"
#: ``kind`` of an EGA-V1 phase checkpoint (other kinds share the format, e.g. the cascade baselines).
EGA_V1_KIND = "ega_v1"

#: Attribute under which a phase LightningModule holds its EGAV1: the state-dict prefix of its weights.
MODEL_ATTR = "model"
#: State-dict prefixes of the module groups, relative to a phase module whose EGAV1 is ``model``.
ENCODER = ("model.embedding", "model.recformer", "model.ctr_head", "model.task_heads", "model.observation")
EVALUATOR = ("model.evaluator",)
GENERATOR = ("model.generator",)
PAYMENT = ("model.payment",)
#: Which phase trains each module group (for the "run that phase first" hint).
TRAINED_BY: dict[str, str] = {
    **{p: "pretrain" for p in ENCODER},
    **{p: "reward" for p in EVALUATOR},
    **{p: "rlaf" for p in GENERATOR},
    **{p: "payment" for p in PAYMENT},
}
#: EGAV1Config fields that change neither the parameters nor their meaning: they may differ
#: between the checkpoint and the module that loads it.
RUNTIME_CONFIG_FIELDS = frozenset({"query_chunk", "kernel_backend", "w_z_init"})


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: names the file and the reason."""

    def __init__(self, path: Any, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path}: {reason}")


# ----------------------------------------------------------------------------------------------
# Saving


def make_weights_only_safe(obj: Any) -> Any:
    """``obj`` with dataclasses → dicts, paths → strings, mappings → dicts (recursively), so
    ``torch.load(weights_only=True)`` can read it back. Tensors, numbers, strings, None, lists and
    tuples are kept; any other object becomes its ``repr`` (hyper-parameters are for reading)."""
    if obj is None or isinstance(obj, (bool, int, float, str, Tensor, torch.dtype, torch.device)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: make_weights_only_safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k) if not isinstance(k, (int, str)) else k: make_weights_only_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):  # named tuples become lists
        return tuple(make_weights_only_safe(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [make_weights_only_safe(v) for v in obj]
    if hasattr(obj, "__dict__") and type(obj).__name__ == "Namespace":  # jsonargparse / argparse
        return {k: make_weights_only_safe(v) for k, v in vars(obj).items()}
    return repr(obj)


def config_dict(config: EGAV1Config) -> dict[str, Any]:
    """The config as a plain dict (tuples kept)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def build_metadata(
    *,
    phase: str,
    config: EGAV1Config,
    vocab_sizes: Mapping[str, int],
    cross_vocab_sizes: Optional[Sequence[int]],
    num_slots: int,
    trained: Sequence[str],
    world: Optional[Mapping[str, Any]] = None,
    max_behaviours: Optional[int] = None,
) -> dict[str, Any]:
    """The ``"egakit"`` entry of a checkpoint (module docstring); ``max_behaviours`` is the L the
    model was trained with (``ega allocate`` serves the same)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": EGA_V1_KIND,
        "phase": phase,
        "model_config": config_dict(config),
        "vocab_sizes": {str(k): int(v) for k, v in vocab_sizes.items()},
        "cross_vocab_sizes": None if cross_vocab_sizes is None else [int(v) for v in cross_vocab_sizes],
        "num_slots": int(num_slots),
        "trained": sorted(set(trained)),
        "world": None if world is None else dict(world),
        "max_behaviours": None if max_behaviours is None else int(max_behaviours),
    }


def world_identity(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about its world (from world.json)."""
    return {"schema_version": int(meta["schema_version"]), "preset": meta.get("preset"), "seed": meta.get("seed")}


# ----------------------------------------------------------------------------------------------
# Loading


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file (train the phase that writes it first, or fix the path)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(path, f"cannot be loaded with weights_only=True (it holds arbitrary objects): {err}") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(path, f"unreadable or truncated: {err}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(path, "not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def check_finite(ckpt: Mapping[str, Any], path: Any) -> None:
    """Refuse a checkpoint whose weights hold NaN or ±inf (it would serve arbitrary winners)."""
    bad = [name for name, tensor in ckpt["state_dict"].items()
           if isinstance(tensor, Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise CheckpointError(path, f"non-finite weights (NaN or inf) in {', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}")


def checkpoint_metadata(ckpt: Mapping[str, Any], path: Any) -> dict[str, Any]:
    """The ``"egakit"`` entry, checked for format and world schema version."""
    meta = ckpt.get(METADATA_KEY)
    if not isinstance(meta, Mapping):
        raise CheckpointError(path, f"not an egakit phase checkpoint (no {METADATA_KEY!r} metadata)")
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"checkpoint format {fmt!r}, this egakit reads format {CHECKPOINT_FORMAT}")
    world = meta.get("world")
    if world is not None and world.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            path,
            f"trained on a world of schema version {world.get('schema_version')!r}, "
            f"this egakit's world schema is version {SCHEMA_VERSION}",
        )
    return dict(meta)


def config_from_metadata(meta: Mapping[str, Any], path: Any) -> EGAV1Config:
    """Rebuild the :class:`EGAV1Config` a checkpoint was trained with."""
    known = {f.name for f in dataclasses.fields(EGAV1Config)}
    stored = dict(meta["model_config"])
    unknown = sorted(set(stored) - known)
    if unknown:
        raise CheckpointError(path, f"model_config has fields this egakit does not know: {unknown}")
    try:
        return EGAV1Config(**stored)
    except (TypeError, ValueError) as err:
        raise CheckpointError(path, f"invalid model_config: {err}") from err


def compatibility_problems(meta: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Reasons why a checkpoint's weights do not fit a module described by ``expected`` (same keys
    as the metadata: ``model_config``, ``vocab_sizes``, ``cross_vocab_sizes``, ``num_slots``)."""
    problems = []
    mine, theirs = dict(expected.get("model_config", {})), dict(meta.get("model_config", {}))
    for name in sorted(set(mine) | set(theirs)):
        if name in RUNTIME_CONFIG_FIELDS:
            continue
        a, b = theirs.get(name, "<absent>"), mine.get(name, "<absent>")
        if isinstance(a, list):
            a = tuple(a)
        if isinstance(b, list):
            b = tuple(b)
        if a != b:
            problems.append(f"model.{name}: checkpoint {a!r}, this run {b!r}")
    for key in ("vocab_sizes", "cross_vocab_sizes", "num_slots"):
        if key in expected:
            a, b = meta.get(key), expected[key]
            if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
                a, b = list(a), list(b)
            if a != b:
                problems.append(f"{key}: checkpoint {a!r}, this run {b!r}")
    return problems


#: Metadata keys that say which run a checkpoint belongs to (a phase of EGA-V1, a cascade stage).
IDENTITY_KEYS = ("kind", "phase", "stage", "training")


def resume_problems(meta: Mapping[str, Any], identity: Mapping[str, Any]) -> list[str]:
    """Why a run described by ``identity`` (a module's ``checkpoint_identity()``: the identity keys
    it has, plus ``model_config`` and vocabularies) cannot resume from a checkpoint with ``meta``."""
    problems = [
        f"{key}: checkpoint {meta.get(key)!r}, this run {identity[key]!r}"
        for key in IDENTITY_KEYS
        if key in identity and meta.get(key) != identity[key]
    ]
    return problems + compatibility_problems(meta, identity)


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


@dataclass
class LoadedInit:
    """What :func:`load_init` restored: the prefixes and the checkpoint's metadata."""

    restored: list[str]
    metadata: dict[str, Any]


def load_init(
    module: nn.Module,
    path: str | Path,
    required_prefixes: Sequence[str],
    *,
    optional_prefixes: Sequence[str] = (),
    expected: Optional[Mapping[str, Any]] = None,
    checkpoint: Optional[Mapping[str, Any]] = None,
) -> LoadedInit:
    """Restore the submodules under ``required_prefixes`` (and those of ``optional_prefixes`` the
    checkpoint has trained) from the phase checkpoint at ``path`` into ``module``.

    Refused with a :class:`CheckpointError` naming the reason: not loadable with
    ``weights_only=True``; not an egakit checkpoint or another format / world schema version;
    ``expected`` (model config, vocabularies, K) differs; a required module was never trained
    (named, with the phase that trains it); keys or shapes under a prefix do not match. Nothing
    is modified unless every check passes. ``checkpoint``: its content, when already read.
    """
    ckpt = read_checkpoint(path) if checkpoint is None else checkpoint
    meta = checkpoint_metadata(ckpt, path)
    if meta.get("kind") != EGA_V1_KIND:
        raise CheckpointError(path, f"a {meta.get('kind')!r} checkpoint, not an EGA-V1 phase checkpoint")
    if expected is not None:
        problems = compatibility_problems(meta, expected)
        if problems:
            raise CheckpointError(path, "another model configuration: " + "; ".join(problems))
        world, my_world = meta.get("world"), expected.get("world")
        if world and my_world and (world.get("preset"), world.get("seed")) != (my_world.get("preset"), my_world.get("seed")):
            warnings.warn(
                f"checkpoint {path} was trained on world preset={world.get('preset')!r} seed={world.get('seed')!r}, "
                f"this run uses preset={my_world.get('preset')!r} seed={my_world.get('seed')!r}",
                stacklevel=2,
            )
    trained = set(meta.get("trained", ()))
    missing = [p for p in required_prefixes if p not in trained]
    if missing:
        phases = sorted({TRAINED_BY.get(p, "?") for p in missing})
        raise CheckpointError(
            path,
            f"the {meta.get('phase', '?')!r} checkpoint has no trained {', '.join(missing)} "
            f"(it has trained: {', '.join(sorted(trained)) or 'nothing'}); these are trained by the "
            f"{' / '.join(phases)} phase: use that phase's checkpoint (or a later one's)",
        )
    prefixes = list(required_prefixes) + [p for p in optional_prefixes if p in trained and p not in required_prefixes]
    own = module.state_dict()
    theirs = ckpt["state_dict"]
    chosen: dict[str, Tensor] = {}
    for prefix in prefixes:
        mine_keys = {k for k in own if _under(k, prefix)}
        their_keys = {k for k in theirs if _under(k, prefix)}
        if mine_keys - their_keys:
            raise CheckpointError(path, f"module {prefix} lacks {sorted(mine_keys - their_keys)[:5]} (another model?)")
        if their_keys - mine_keys:
            raise CheckpointError(path, f"module {prefix} has unexpected {sorted(their_keys - mine_keys)[:5]}")
        for key in sorted(mine_keys):
            if tuple(theirs[key].shape) != tuple(own[key].shape):
                raise CheckpointError(
                    path, f"{key} has shape {tuple(theirs[key].shape)}, this model {tuple(own[key].shape)}"
                )
            chosen[key] = theirs[key]
    module.load_state_dict(chosen, strict=False)
    return LoadedInit(restored=prefixes, metadata=meta)


def inference_modules(allocation: str, payment_rule: str) -> tuple[str, ...]:
    """Module groups :meth:`EGAV1.allocate` reads: the encoder, plus the generator for AucFormer
    and the payment network when it prices (``payment_rule="network"``; critical-bid prices need
    only the generator). GSP on q̂·b, the −auf ablation, needs the encoder only."""
    if allocation == "gsp":
        return ENCODER
    return ENCODER + GENERATOR + (PAYMENT if payment_rule == "network" else ())


def load_ega_v1(
    path: str | Path,
    required: Optional[Sequence[str]] = None,
    *,
    allocation: Optional[str] = None,
    payment_rule: Optional[str] = None,
    world_meta: Optional[Mapping[str, Any]] = None,
) -> tuple[EGAV1, dict[str, Any]]:
    """The one loader of an EGA-V1 for inference: the model of the phase checkpoint at ``path``
    (read with ``weights_only=True``), in eval mode, with the module groups ``required`` (state-dict
    prefixes such as :data:`ENCODER`; default: what its allocation and pricing read,
    :func:`inference_modules`) restored from trained weights, and the checkpoint's metadata.

    ``allocation`` / ``payment_rule`` override the stored ones (``"gsp"``: the −auf ablation on
    the same encoder; ``"critical"`` / ``"network"`` prices). ``world_meta`` (world.json), when
    given, must have the checkpoint's vocabularies and K. Refused with a :class:`CheckpointError`
    naming the reason; a checkpoint with non-finite weights is refused too.
    """
    ckpt = read_checkpoint(path)
    check_finite(ckpt, path)
    meta = checkpoint_metadata(ckpt, path)
    if meta.get("kind") != EGA_V1_KIND:
        raise CheckpointError(path, f"a {meta.get('kind')!r} checkpoint, not an EGA-V1 phase checkpoint")
    for key in ("vocab_sizes", "model_config", "num_slots"):
        if key not in meta:
            raise CheckpointError(path, f"its metadata lacks {key!r} (not written by this egakit?)")
    config = config_from_metadata(meta, path)
    if allocation is not None:
        config = dataclasses.replace(config, allocation=allocation)
    if payment_rule is not None:
        config = dataclasses.replace(config, payment_rule=payment_rule)
    vocab = {str(k): int(v) for k, v in meta["vocab_sizes"].items()}
    if world_meta is not None:
        world_vocab = {str(k): int(v) for k, v in world_meta["vocab"].items()}
        if world_vocab != vocab:
            diff = sorted(k for k in set(vocab) | set(world_vocab) if vocab.get(k) != world_vocab.get(k))
            raise CheckpointError(path, f"vocabularies differ from the world's (world.json 'vocab') in {diff}")
        if int(world_meta["K"]) != config.K:
            raise CheckpointError(path, f"model K={config.K}, the world's K={world_meta['K']}")
    if required is None:
        required = inference_modules(config.allocation, config.payment_rule)
    cross = meta.get("cross_vocab_sizes") if config.use_cross_features else None
    holder = nn.Module()
    holder.add_module(MODEL_ATTR, EGAV1(config, vocab, cross))
    load_init(holder, path, list(required), checkpoint=ckpt)
    return getattr(holder, MODEL_ATTR).eval(), meta
