"""`make demo` / `ega demo`: the main job on the small built-in world, end to end.

1. **world**: make the ``small`` world (reused when the same preset and seed is already there) and
   print its statistics: requests, candidates per request, CTR by slot and the size of each
   externality and cross effect on the ground truth.
2. **EGA-V1**: the four training phases of ``configs/v1/{pretrain,reward,rlaf,payment}.yaml``, each
   starting from the previous phase's checkpoint (V1 §4).
3. **cascades**: the stage models of MCA and FS-LTR (``configs/baselines/small/``).
4. **Table 1**: ``ega evaluate -c configs/eval/v1.yaml`` on the Table-1 systems, printed as
   Markdown and written as JSON under ``reports/v1/``.

The demo trains with the preset's **demo budget** (``configs/demo/<preset>.yaml``: overrides of
the configs above, so that the world and the four phases fit in 10 minutes on 2 cores);
``--budget full`` runs the configs as they are. Switching budgets reuses what is already trained
unless ``--force`` is given.

Every training stage is skipped when its checkpoint is already there (``--force`` redoes them,
and so does a newly generated world: another seed), so an interrupted demo resumes; the
evaluation re-scores every Table-1 system whenever a stage was (re)trained, and otherwise
resumes per system like ``ega evaluate``. The configs address their checkpoints and the world
under ``runs/``; ``--runs DIR`` moves all of that to ``DIR`` (the rewritten configs are kept
under ``DIR/demo/configs/`` so each step can be rerun by hand with ``ega fit -c``).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from egakit.reporting import format_world_stats

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
#: The configs name every artefact under this directory (world, checkpoints, W&B runs).
CONFIG_RUNS = "runs"
PHASES = ("pretrain", "reward", "rlaf", "payment")
#: Cascade stage configs in training order: FS-LTR's stages learn from the later stage (teacher).
BASELINE_STAGES = ("mca/sasrec", "mca/dssm", "mca/din", "fs_ltr/din", "fs_ltr/dssm", "fs_ltr/sasrec")
TABLE1_SYSTEMS = ("MCA", "FS-LTR", "EGA-V1", "EGA-V1 (Eq. 19 prices)", "GSP (true CTR)", "VCG (true CTR)")
#: ``--full``: the EGA-V1 variants of Tables 2-3 and Fig. 5, each trained through the four phases
#: into ``ckpt/<phase>_<name>/`` (where configs/eval/v1.yaml reads them): overrides of
#: ``model.init_args.model`` and ``data.init_args``.
ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "no_gcf": {"model": {"variant": "no_gcf"}},
    "no_mif": {"model": {"variant": "no_mif"}},
    "ta_only": {"model": {"variant": "ta_only"}},
    "ca_only": {"model": {"variant": "ca_only"}},
    "late_fusion": {"model": {"variant": "late_fusion"}},
    "cf": {"model": {"use_cross_features": True}, "data": {"cross_features": True}},
    "m1": {"model": {"m": 1}},
    "m4": {"model": {"m": 4}},
}
#: ``--full``: the extra cascade stage of Table 3 (MCA's ranker without cross features).
FULL_BASELINE_STAGES = ("mca/din_nocf",)


@dataclass(frozen=True)
class ConfigSet:
    """The configs the demo runs for one world preset; the world is the eval config's world_dir."""

    phases: Path      # <phase>.yaml of the four EGA-V1 phases
    baselines: Path   # <mca|fs_ltr>/<stage>.yaml of the cascades
    evaluation: Path  # the ega evaluate config
    demo_budget: Optional[Path] = None  # the demo's training budget: overrides of those configs


CONFIG_SETS = {
    "small": ConfigSet(CONFIGS / "v1", CONFIGS / "baselines" / "small", CONFIGS / "eval" / "v1.yaml",
                       CONFIGS / "demo" / "small.yaml"),
    "tiny": ConfigSet(CONFIGS / "v1" / "tiny", CONFIGS / "baselines" / "tiny", CONFIGS / "eval" / "v1_tiny.yaml"),
}
#: ``--budget``: ``demo`` applies the preset's ``demo_budget`` overrides, ``full`` runs the configs as they are.
BUDGETS = ("demo", "full")


@dataclass(frozen=True)
class Step:
    """One resumable stage of the demo: ``run`` produces ``output`` (and returns its validation
    metrics, or None); skipped when the output exists."""

    name: str
    output: Path
    run: Callable[[], Optional[dict[str, float]]]


def ensure_world(world_dir: Path, preset: str, seed: int, force: bool = False) -> bool:
    """Generate the world under ``world_dir`` unless the same preset and seed is there; True when
    it was (re)generated, so that nothing trained on a previous world is reused."""
    from egakit.sim import generate_world

    meta_path = world_dir / "world.json"
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("preset") == preset and meta.get("seed") == seed:
            print(f"[demo] reusing world {world_dir} (preset={preset}, seed={seed})")
            return False
    started = time.perf_counter()
    generate_world(preset, world_dir, seed=seed, progress=True)
    print(f"[demo] world {preset!r} generated in {time.perf_counter() - started:.1f} s -> {world_dir}")
    return True


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` (a parsed YAML tree) with ``change`` applied to every string in it."""
    if isinstance(value, dict):
        return {key: map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [map_strings(item, change) for item in value]
    return change(value) if isinstance(value, str) else value


def relocate(value: Any, runs: Path) -> Any:
    """``value`` (a parsed YAML tree) with every string path under ``runs/`` moved under ``runs``."""
    prefix = CONFIG_RUNS + "/"
    return map_strings(value, lambda s: str(runs / s[len(prefix):]) if s.startswith(prefix) else s)


def as_ablation(value: Any, name: str) -> Any:
    """``value`` (a parsed YAML tree) with each phase checkpoint directory ``.../ckpt/<phase>``
    renamed ``.../ckpt/<phase>_<name>``, so an ablation reads and writes its own phases."""
    pattern = re.compile(rf"/ckpt/({'|'.join(PHASES)})(?=/|$)")
    return map_strings(value, lambda s: pattern.sub(rf"/ckpt/\1_{name}", s))


def merged(tree: Any, overrides: Any) -> Any:
    """``tree`` (a parsed YAML tree) with ``overrides`` merged in: mappings key by key, any other
    value replaced."""
    if not (isinstance(tree, dict) and isinstance(overrides, dict)):
        return overrides
    return {**tree, **{key: merged(tree.get(key), value) for key, value in overrides.items()}}


def load_budget(path: Optional[Path]) -> dict[str, dict[str, Any]]:
    """The overrides of a demo budget file: config path relative to ``configs/`` → YAML tree to
    merge into that config. Raises ValueError on a key that names no config or a non-mapping."""
    if path is None:
        return {}
    budget = yaml.safe_load(path.read_text()) or {}
    for name, overrides in budget.items():
        if not (CONFIGS / name).is_file():
            raise ValueError(f"{path}: {name!r} names no config under {CONFIGS}")
        if not isinstance(overrides, dict):
            raise ValueError(f"{path}: the overrides of {name!r} must be a mapping, got {overrides!r}")
    return budget


def write_config(
    source: Path,
    runs: Path,
    config_dir: Path,
    *,
    ablation: Optional[str] = None,
    budget: Optional[dict[str, dict[str, Any]]] = None,
    **top_level: Any,
) -> Path:
    """Copy the YAML config ``source`` under ``config_dir`` with its ``runs/`` paths relocated;
    ``budget`` (:func:`load_budget`) merges its overrides of ``source`` in, and ``ablation`` (a
    key of ABLATIONS) applies that variant's overrides and checkpoint paths."""
    tree = relocate(yaml.safe_load(source.read_text()), runs)
    tree = merged(tree, (budget or {}).get(source.relative_to(CONFIGS).as_posix(), {}))
    tree.update(top_level)
    target = config_dir / source.relative_to(CONFIGS)
    if ablation is not None:
        tree = as_ablation(tree, ablation)
        overrides = ABLATIONS[ablation]
        tree["model"]["init_args"]["model"].update(overrides.get("model", {}))
        tree["data"]["init_args"].update(overrides.get("data", {}))
        target = target.with_name(f"{target.stem}_{ablation}{target.suffix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(tree, sort_keys=False))
    return target


def checkpoint_of(config: Path) -> Path:
    """``last.ckpt`` of the (first) ModelCheckpoint callback of a training config."""
    tree = yaml.safe_load(config.read_text())
    for callback in tree["trainer"].get("callbacks") or []:
        if callback["class_path"].endswith("ModelCheckpoint"):
            return Path(callback["init_args"]["dirpath"]) / "last.ckpt"
    raise ValueError(f"{config}: no ModelCheckpoint callback, the demo cannot tell where the phase writes")


def fit(config: Path) -> dict[str, float]:
    """``ega fit -c config`` in this process; returns the last validation metrics (``val/...``).
    Closes the W&B run afterwards: WandbLogger reuses a run that is still open, so without this
    every phase would log into the first phase's run."""
    import sys

    from egakit.lightning_cli import run_lightning_cli

    cli = run_lightning_cli(["fit", "-c", str(config)])
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
    metrics = cli.trainer.callback_metrics
    return {key: float(value) for key, value in sorted(metrics.items()) if key.startswith("val/")}


def fit_step(name: str, config: Path) -> Step:
    """Training with ``ega fit -c config``; its output is the config's last.ckpt."""
    return Step(name, checkpoint_of(config), lambda: fit(config))


def run_steps(steps: Sequence[Step], force: bool) -> list[tuple[str, float]]:
    """Run each step whose output is missing (all with ``force``), then print the validation
    metrics each run reported; returns (name, seconds) of the steps that ran."""
    timings, summary = [], []
    for index, step in enumerate(steps, 1):
        if step.output.is_file() and not force:
            print(f"[demo] {index}/{len(steps)} {step.name}: reusing {step.output}")
            continue
        print(f"[demo] {index}/{len(steps)} {step.name} -> {step.output}", flush=True)
        started = time.perf_counter()
        metrics = step.run()
        if not step.output.is_file():
            raise RuntimeError(f"demo step {step.name!r} finished without writing {step.output}")
        timings.append((step.name, time.perf_counter() - started))
        summary.append((step.name, metrics or {}))
        print(f"[demo] {step.name} done in {timings[-1][1]:.0f} s", flush=True)
    if summary:
        print("[demo] validation metrics of the runs above (last validation of each):")
        width = max(len(name) for name, _ in summary)
        for name, metrics in summary:
            shown = "  ".join(f"{key}={value:.4g}" for key, value in metrics.items()) or "(no validation)"
            print(f"  {name:<{width}}  {shown}")
    return timings


def run_demo(
    runs: str | Path = CONFIG_RUNS,
    preset: str = "small",
    seed: int = 0,
    *,
    reports: Optional[str | Path] = None,
    force: bool = False,
    world_only: bool = False,
    full: bool = False,
    ablations: Optional[Sequence[str]] = None,
    budget: str = "demo",
) -> int:
    """The demo (see the module docstring) for ``preset`` (a key of CONFIG_SETS): ``reports``
    defaults to the eval config's out_dir; ``world_only`` stops after the world's statistics;
    ``full`` also trains the ablations (``ablations``: a subset of ABLATIONS, default all) and
    evaluates every system whose checkpoints exist (Tables 1-3, Fig. 5); ``budget`` (one of
    BUDGETS) ``demo`` trains with the preset's demo budget, ``full`` with the configs as they are."""
    from egakit.evaluation import load_config, run_evaluation
    from egakit.sim.stats import world_stats

    if preset not in CONFIG_SETS:
        raise ValueError(f"ega demo: no demo configs for preset {preset!r}; choose one of {sorted(CONFIG_SETS)}")
    unknown = sorted(set(ablations or ()) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"ega demo: unknown ablations {unknown}; choose from {sorted(ABLATIONS)}")
    if budget not in BUDGETS:
        raise ValueError(f"ega demo: unknown budget {budget!r}; choose one of {list(BUDGETS)}")
    trained_ablations = (list(ablations) if ablations else list(ABLATIONS)) if full else []
    configs = CONFIG_SETS[preset]
    overrides = load_budget(configs.demo_budget) if budget == "demo" else {}
    runs = Path(runs)
    config_dir = runs / "demo" / "configs"
    extra = {"out_dir": str(reports)} if reports is not None else {}
    demo_started = time.perf_counter()
    eval_config = load_config(write_config(configs.evaluation, runs, config_dir, **extra))
    world_dir = Path(eval_config.world_dir)
    # A new world (another seed, or none yet) makes every checkpoint under runs/ stale.
    force = ensure_world(world_dir, preset, seed, force=force) or force
    print(format_world_stats(world_stats(world_dir)))
    if world_only:
        return 0
    phases = [fit_step(f"EGA-V1 {phase}",
                       write_config(configs.phases / f"{phase}.yaml", runs, config_dir, budget=overrides))
              for phase in PHASES]
    stages = BASELINE_STAGES + (FULL_BASELINE_STAGES if full else ())
    cascades = [fit_step(f"cascade {stage}",
                         write_config(configs.baselines / f"{stage}.yaml", runs, config_dir, budget=overrides))
                for stage in stages]
    ablations = [
        fit_step(f"EGA-V1 {phase} ({name})",
                 write_config(configs.phases / f"{phase}.yaml", runs, config_dir, ablation=name, budget=overrides))
        for name in trained_ablations for phase in PHASES
    ]
    started = time.perf_counter()
    timings = run_steps(phases, force)
    if timings:
        print(f"[demo] the world and EGA-V1's four phases took {time.perf_counter() - demo_started:.0f} s", flush=True)
    timings += run_steps([*cascades, *ablations], force)

    # --full: every system whose checkpoints are there (the tables list the others as missing).
    systems = [spec.name for spec in eval_config.systems
               if all(Path(path).is_file() for path in spec.checkpoints().values())] if full else list(TABLE1_SYSTEMS)
    print(f"[demo] evaluating {', '.join(systems or ['every system'])} on the {eval_config.split} split", flush=True)
    evaluation_started = time.perf_counter()
    run_evaluation(eval_config, only=systems, force=force or bool(timings))
    timings.append(("evaluation", time.perf_counter() - evaluation_started))
    table1 = Path(eval_config.out_dir) / "table1.md"
    print(table1.read_text())
    print(f"[demo] Table 1 written to {table1.parent} (table1.json, table1.md)")
    if timings:
        spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings)
        print(f"[demo] {time.perf_counter() - started:.0f} s in all: {spent}")
    return 0
