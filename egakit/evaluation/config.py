"""The evaluation config (``ega evaluate -c configs/eval/v1.yaml``): which systems, which world.

YAML layout (every key is checked; unknown keys are errors)::

    world_dir: runs/worlds/small       # the world whose split is evaluated
    out_dir: reports/v1                # table1.json … scaling.png land here
    split: test                        # world split (V1 §5.1.1: the last days)
    max_requests: null                 # evaluate only the first n requests (null: all)
    batch_size: 4                      # requests per batch
    seeds: 1                           # repeats (overridden by --seeds); mean ± std over them
    gammas: [0.2, 0.4, …, 2.0]         # bid misreports γ·b for Ψ (V1 §5.1.2)
    psi_requests: null                 # Ψ on the first n requests of each seed (null: all)
    evaluator: PATH                    # EGA-V1 reward-phase checkpoint: the permutation-aware
                                       # evaluator (Eq. 18) of the paper's replay protocol
    scaling: {metric: auc, source: oracle}
    systems:
      - name: MCA                      # row label
        kind: mca                      # mca | fs_ltr | ega | gsp_oracle_ctr | vcg_oracle_ctr
        tables: [table1, table3]       # table1 | table2 | table3 | scaling
        recall: PATH                   # mca / fs_ltr: the three stage checkpoints …
        prerank: PATH
        rank: PATH
        recall_size: 100               # … and the stage sizes R, M (K is the world's)
        prerank_size: 30
        prerank_score: ecpm            # ecpm | ctr
      - name: EGA-V1
        kind: ega
        checkpoint: PATH               # the payment-phase checkpoint (generator + payment);
                                       # for allocation "gsp" (−auf) a pre-training one suffices
        allocation: null               # ega only: override the checkpoint's allocation
                                       # ("gsp" = −auf: GSP on q̂·b with the same encoder)
        payment_rule: null             # ega only: override the pricing ("critical" | "network" = Eq. 19)
        layers: 6                      # for the scaling plot (GCF layers m)

Checkpoint paths may contain ``{seed}``: each seed then loads its own checkpoint (the paper's
"repeated 5 times with different random seeds"); without it every seed evaluates the same
checkpoint and the spread is the evaluation's own randomness (the oracle's sampled labels).
Relative paths are relative to the working directory, like the training configs'. A config path
that is not a local file is looked up among the configs packaged with egakit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from egakit.auction.regret import DEFAULT_GAMMAS
from egakit.baselines.cascade import PRERANK_SCORES
from egakit.metrics.ranking import DEFAULT_RECALL_K
from egakit.model.config import ALLOCATIONS, PAYMENT_RULES

CASCADE_KINDS = ("mca", "fs_ltr")
EGA_KIND = "ega"
ORACLE_KINDS = {"gsp_oracle_ctr": "gsp", "vcg_oracle_ctr": "vcg"}
SYSTEM_KINDS = CASCADE_KINDS + (EGA_KIND,) + tuple(ORACLE_KINDS)
TABLES = ("table1", "table2", "table3", "scaling")
SOURCES = ("oracle", "evaluator")
#: The tables' metric columns (V1 §5.1.2, docs/design.md §6); Recall@k uses k = 50.
METRICS = (f"recall@{DEFAULT_RECALL_K}", "auc", "ectr", "erpm", "psi", "dev")
SEED_FIELD = "{seed}"


class EvalConfigError(ValueError):
    """A bad evaluation config: names the file and the key."""

    def __init__(self, where: str, key: str, reason: str) -> None:
        self.where, self.key, self.reason = where, key, reason
        super().__init__(f"{where}: {key}: {reason}")


@dataclass
class SystemSpec:
    """One evaluated system (one or two rows of a table: per source)."""

    name: str
    kind: str
    tables: tuple[str, ...] = ("table1",)
    recall: Optional[str] = None
    prerank: Optional[str] = None
    rank: Optional[str] = None
    recall_size: int = 100
    prerank_size: int = 30
    prerank_score: str = "ecpm"
    checkpoint: Optional[str] = None
    allocation: Optional[str] = None
    payment_rule: Optional[str] = None
    layers: Optional[int] = None

    @property
    def slug(self) -> str:
        """File-name form of the name (``EGA-V1 −mif`` → ``ega-v1_mif``)."""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower()
        return slug or "system"

    def checkpoints(self) -> dict[str, str]:
        """Role → path template of every checkpoint this system reads."""
        if self.kind in CASCADE_KINDS:
            return {"recall": self.recall, "prerank": self.prerank, "rank": self.rank}
        if self.kind == EGA_KIND:
            return {"checkpoint": self.checkpoint}
        return {}


@dataclass
class ScalingSpec:
    metric: str = "auc"
    source: str = "oracle"


@dataclass
class EvalConfig:
    world_dir: str
    systems: list[SystemSpec]
    out_dir: str = "reports/v1"
    split: str = "test"
    max_requests: Optional[int] = None
    batch_size: int = 4
    seeds: int = 1
    gammas: tuple[float, ...] = DEFAULT_GAMMAS
    psi_requests: Optional[int] = None
    evaluator: Optional[str] = None
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    source_path: str = "<config>"

    def system(self, name: str) -> SystemSpec:
        for spec in self.systems:
            if spec.name == name:
                return spec
        raise KeyError(f"no system named {name!r}; the config has {[s.name for s in self.systems]}")


def resolve(template: Optional[str], seed: int) -> Optional[str]:
    """A checkpoint path for ``seed`` (``{seed}`` replaced)."""
    return None if template is None else template.replace(SEED_FIELD, str(seed))


def _check_keys(where: str, section: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise EvalConfigError(where, f"{section}{unknown[0]}", f"unknown key; valid keys: {sorted(allowed)}")


def _positive_int(where: str, key: str, value: Any, *, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise EvalConfigError(where, key, f"must be a positive integer{' or null' if optional else ''}, got {value!r}")
    return value


def _system(where: str, i: int, raw: Any) -> SystemSpec:
    key = f"systems[{i}]"
    if not isinstance(raw, Mapping):
        raise EvalConfigError(where, key, f"must be a mapping, got {type(raw).__name__}")
    allowed = {f.name for f in fields(SystemSpec)}
    _check_keys(where, f"{key}.", raw, allowed)
    for required in ("name", "kind"):
        if not raw.get(required):
            raise EvalConfigError(where, f"{key}.{required}", "is required")
    spec = SystemSpec(**{k: v for k, v in raw.items()})
    spec.name = str(spec.name)
    if spec.kind not in SYSTEM_KINDS:
        raise EvalConfigError(where, f"{key}.kind", f"must be one of {SYSTEM_KINDS}, got {spec.kind!r}")
    tables = spec.tables if isinstance(spec.tables, (list, tuple)) else [spec.tables]
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise EvalConfigError(where, f"{key}.tables", f"unknown table {bad[0]!r}; valid: {TABLES}")
    spec.tables = tuple(tables)
    for role, path in spec.checkpoints().items():
        if not path:
            raise EvalConfigError(where, f"{key}.{role}", f"a {spec.kind!r} system needs this checkpoint path")
    for name in ("recall_size", "prerank_size"):
        _positive_int(where, f"{key}.{name}", getattr(spec, name))
    _positive_int(where, f"{key}.layers", spec.layers, optional=True)
    if spec.prerank_score not in PRERANK_SCORES:
        raise EvalConfigError(where, f"{key}.prerank_score", f"must be one of {PRERANK_SCORES}")
    if spec.allocation is not None and (spec.kind != EGA_KIND or spec.allocation not in ALLOCATIONS):
        raise EvalConfigError(where, f"{key}.allocation", f"only for kind 'ega', one of {ALLOCATIONS}")
    if spec.payment_rule is not None and (spec.kind != EGA_KIND or spec.payment_rule not in PAYMENT_RULES):
        raise EvalConfigError(where, f"{key}.payment_rule", f"only for kind 'ega', one of {PAYMENT_RULES}")
    if spec.prerank_size > spec.recall_size:
        raise EvalConfigError(where, f"{key}.prerank_size", f"{spec.prerank_size} exceeds recall_size {spec.recall_size}")
    if "scaling" in spec.tables and spec.layers is None:
        raise EvalConfigError(where, f"{key}.layers", "a system in the scaling plot needs its number of layers")
    return spec


def parse_config(raw: Any, where: str = "<config>") -> EvalConfig:
    """Validate a loaded YAML mapping into an :class:`EvalConfig`."""
    if not isinstance(raw, Mapping):
        raise EvalConfigError(where, "(top level)", "must be a mapping")
    allowed = {f.name for f in fields(EvalConfig)} - {"source_path"}
    _check_keys(where, "", raw, allowed)
    if not raw.get("world_dir"):
        raise EvalConfigError(where, "world_dir", "is required")
    systems_raw = raw.get("systems")
    if not isinstance(systems_raw, list) or not systems_raw:
        raise EvalConfigError(where, "systems", "must be a non-empty list")
    systems = [_system(where, i, s) for i, s in enumerate(systems_raw)]
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EvalConfigError(where, "systems", f"duplicate system name {dup[0]!r}")
    slugs = [s.slug for s in systems]
    dup = sorted({n for n in slugs if slugs.count(n) > 1})
    if dup:
        raise EvalConfigError(where, "systems", f"two names map to the same results file {dup[0]!r}.json")
    scaling_raw = raw.get("scaling") or {}
    if not isinstance(scaling_raw, Mapping):
        raise EvalConfigError(where, "scaling", "must be a mapping")
    _check_keys(where, "scaling.", scaling_raw, {"metric", "source"})
    scaling = ScalingSpec(**scaling_raw)
    if scaling.metric not in METRICS:
        raise EvalConfigError(where, "scaling.metric", f"must be one of {METRICS}")
    if scaling.source not in SOURCES:
        raise EvalConfigError(where, "scaling.source", f"must be one of {SOURCES}")
    gammas = tuple(float(g) for g in raw.get("gammas", DEFAULT_GAMMAS))
    if not gammas or any(not g > 0 for g in gammas):
        raise EvalConfigError(where, "gammas", f"must be a non-empty list of positive numbers, got {gammas}")
    return EvalConfig(
        world_dir=str(raw["world_dir"]),
        systems=systems,
        out_dir=str(raw.get("out_dir", "reports/v1")),
        split=str(raw.get("split", "test")),
        max_requests=_positive_int(where, "max_requests", raw.get("max_requests"), optional=True),
        batch_size=_positive_int(where, "batch_size", raw.get("batch_size", 4)),
        seeds=_positive_int(where, "seeds", raw.get("seeds", 1)),
        gammas=gammas,
        psi_requests=_positive_int(where, "psi_requests", raw.get("psi_requests"), optional=True),
        evaluator=None if raw.get("evaluator") is None else str(raw["evaluator"]),
        scaling=scaling,
        source_path=where,
    )


def load_config(path: str | Path) -> EvalConfig:
    """The evaluation config at ``path``: the local file when it exists, else the config packaged
    with egakit under the same name (``configs/eval/v1.yaml``, :mod:`egakit.config_files`)."""
    from egakit.config_files import ConfigNotFoundError, resolve_config

    try:
        path = resolve_config(path)
    except ConfigNotFoundError as err:
        raise EvalConfigError(str(path), "(file)", str(err)) from err
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise EvalConfigError(str(path), "(file)", f"not valid YAML: {err}") from err
    return parse_config(raw, str(path))
