"""`make demo` / `ega demo`: the main job on the small built-in world, end to end.

1. **world**: make the ``small`` world (reused when the same preset and seed is already there) and
   print its statistics: requests, candidates per request, CTR by slot and the size of each
   externality and cross effect on the ground truth.
2. **EGA-V1**: the four training phases of ``configs/v1/{pretrain,reward,rlaf,payment}.yaml``, each
   starting from the previous phase's checkpoint in the same run (V1 §4).
3. **cascades**: the stage models of MCA and FS-LTR (``configs/baselines/small/``).
4. **Table 1**: ``ega evaluate -c configs/eval/v1.yaml`` on the Table-1 systems, printed as
   Markdown and written as JSON under ``reports/v1/``.

Every step is an ``ega fit`` command composed of config files, printed before it runs so that it
can be rerun by hand: the phase config, then the preset's **demo budget** when it has one
(``configs/demo/<preset>/<phase>.yaml``: overrides so that the world and the four phases fit in 10
minutes on 2 cores; ``--budget full`` leaves it out), then with ``--full`` an ablation file
(``configs/v1/ablations/<name>.yaml``, a run of its own: ``runs/demo-<name>/``), and the command
line's ``--runs_dir`` and world. The configs are read from ``./configs`` when it exists, else from
the copies packaged with egakit. Switching budgets reuses what is already trained unless
``--force`` is given.

Every training stage is skipped when its checkpoint is already there (``--force`` redoes them,
and so does a newly generated world: another seed), so an interrupted demo resumes; the
evaluation re-scores every Table-1 system whenever a stage was (re)trained, and otherwise
resumes per system like ``ega evaluate``. The configs address their checkpoints and the world
under ``runs/``; ``--runs DIR`` moves all of that to ``DIR``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from egakit.config_files import CONFIG_FOLDER, resolve_config
from egakit.lightning_cli import DEFAULT_RUN_NAME, RUN_DIR
from egakit.reporting import format_world_stats

#: The configs name every artefact under this directory (world, checkpoints, W&B runs).
CONFIG_RUNS = "runs"
PHASES = ("pretrain", "reward", "rlaf", "payment")
#: Cascade stage configs in training order: FS-LTR's stages learn from the later stage (teacher).
BASELINE_STAGES = ("mca/sasrec", "mca/dssm", "mca/din", "fs_ltr/din", "fs_ltr/dssm", "fs_ltr/sasrec")
TABLE1_SYSTEMS = ("MCA", "FS-LTR", "EGA-V1", "EGA-V1 (Eq. 19 prices)", "GSP (true CTR)", "VCG (true CTR)")
#: ``--full``: the EGA-V1 variants of Tables 2-3 and Fig. 5, each an override file
#: ``configs/v1/ablations/<name>.yaml`` trained through the four phases into its own run
#: ``runs/<run_name>-<name>/`` (where configs/eval/v1.yaml reads them).
ABLATION_DIR = "v1/ablations"
ABLATIONS = ("no_gcf", "no_mif", "ta_only", "ca_only", "late_fusion", "cf", "m1", "m4")
#: ``--full``: the extra cascade run of Table 3, (stage, override file below configs/): MCA's
#: ranker without cross features, a run of its own (``runs/baselines/<preset>-no_cf/``).
FULL_BASELINE_STAGES = (("mca/din", "baselines/ablations/no_cf.yaml"),)


def config_path(name: str) -> Path:
    """The config ``configs/<name>``: the local file when it exists, else the packaged one."""
    return resolve_config(f"{CONFIG_FOLDER}/{name}")


def config_exists(name: str) -> bool:
    try:
        config_path(name)
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class ConfigSet:
    """The configs the demo runs for one world preset (names below ``configs/``); the world is the
    eval config's world_dir."""

    phases: str      # <phase>.yaml of the four EGA-V1 phases
    baselines: str   # <mca|fs_ltr>/<stage>.yaml of the cascades
    evaluation: str  # the ega evaluate config
    demo_budget: Optional[str] = None  # <phase>.yaml: the demo's training budget, overrides of those

    def budget_for(self, config: str) -> Optional[str]:
        """The demo-budget override file of the config named ``config``, or None."""
        if self.demo_budget is None:
            return None
        stem = config.rsplit("/", 1)[-1]
        name = f"{self.demo_budget}/{stem}"
        return name if config_exists(name) else None


CONFIG_SETS = {
    "small": ConfigSet("v1", "baselines/small", "eval/v1.yaml", "demo/small"),
    "tiny": ConfigSet("v1/tiny", "baselines/tiny", "eval/v1_tiny.yaml"),
}
#: ``--budget``: ``demo`` adds the preset's ``demo_budget`` overrides, ``full`` runs the configs as they are.
BUDGETS = ("demo", "full")


@dataclass(frozen=True)
class Step:
    """One resumable stage of the demo: ``run`` produces ``output`` (and returns its validation
    metrics, or None); skipped when the output exists."""

    name: str
    output: Path
    run: Callable[[], Optional[dict[str, float]]]
    command: str = ""  # the shell command that runs the step by hand


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


def relocated(path: Optional[str], runs: Path) -> Optional[str]:
    """``path`` moved from under ``runs/`` (the configs' folder) to under ``runs``."""
    prefix = CONFIG_RUNS + "/"
    if path is None or not path.startswith(prefix):
        return path
    return str(runs / path[len(prefix):])


def relocate_eval_config(config: Any, runs: Path) -> Any:
    """An :class:`~egakit.evaluation.config.EvalConfig` whose world and checkpoint paths under
    ``runs/`` are moved under ``runs`` (a new object; the config file is left as it is)."""
    systems = [
        dataclasses.replace(spec, **{f.name: relocated(getattr(spec, f.name), runs)
                                     for f in dataclasses.fields(spec) if isinstance(getattr(spec, f.name), str)})
        for spec in config.systems
    ]
    return dataclasses.replace(config, world_dir=relocated(config.world_dir, runs),
                               evaluator=relocated(config.evaluator, runs), systems=systems)


def _read(config: Path) -> dict:
    return yaml.safe_load(config.read_text()) or {}


def checkpoint_of(configs: Sequence[Path], runs_dir: str | Path = CONFIG_RUNS, run_name: Optional[str] = None) -> Path:
    """``last.ckpt`` that ``ega fit -c configs[0] -c configs[1] ... --runs_dir runs_dir
    [--run_name run_name]`` writes: the (first) ModelCheckpoint's ``dirpath`` of the last file
    that sets callbacks, with ``{run_dir}`` = ``<runs_dir>/<run_name>[-<run_variant>]`` (later
    files win and the command line's run_name wins over them, as in the CLI)."""
    trees = [_read(config) for config in configs]
    name = run_name or next((t["run_name"] for t in reversed(trees) if t.get("run_name")), DEFAULT_RUN_NAME)
    variant = next((t["run_variant"] for t in reversed(trees) if t.get("run_variant")), None)
    run_dir = Path(runs_dir) / (f"{name}-{variant}" if variant else name)
    for tree in reversed(trees):
        for callback in (tree.get("trainer") or {}).get("callbacks") or []:
            if callback["class_path"].endswith("ModelCheckpoint"):
                return Path(callback["init_args"]["dirpath"].replace(RUN_DIR, str(run_dir))) / "last.ckpt"
    raise ValueError(f"{configs[0]}: no ModelCheckpoint callback, the demo cannot tell where the run writes")


def fit_args(configs: Sequence[Path], runs_dir: str | Path, world_dir: str | Path) -> list[str]:
    """The ``ega fit`` arguments of a demo step: each config file, then the run folder and world."""
    args = ["fit"]
    for config in configs:
        args += ["-c", str(config)]
    return [*args, f"--runs_dir={runs_dir}", f"--data.init_args.world_dir={world_dir}"]


def fit(args: Sequence[str]) -> dict[str, float]:
    """``ega <args>`` (a fit) in this process; returns the last validation metrics (``val/...``).
    Closes the W&B run afterwards: WandbLogger reuses a run that is still open, so without this
    every phase would log into the first phase's run."""
    import sys

    from egakit.lightning_cli import run_lightning_cli

    cli = run_lightning_cli(list(args))
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
    metrics = cli.trainer.callback_metrics
    return {key: float(value) for key, value in sorted(metrics.items()) if key.startswith("val/")}


def fit_step(name: str, configs: Sequence[Path], runs_dir: str | Path, world_dir: str | Path) -> Step:
    """Training with ``ega fit -c configs[0] -c ...``; its output is the run's last.ckpt."""
    args = fit_args(configs, runs_dir, world_dir)
    return Step(name, checkpoint_of(configs, runs_dir), lambda: fit(args), "ega " + " ".join(args))


def run_steps(steps: Sequence[Step], force: bool) -> list[tuple[str, float]]:
    """Run each step whose output is missing (all with ``force``), then print the validation
    metrics each run reported; returns (name, seconds) of the steps that ran."""
    timings, summary = [], []
    for index, step in enumerate(steps, 1):
        if step.output.is_file() and not force:
            print(f"[demo] {index}/{len(steps)} {step.name}: reusing {step.output}")
            continue
        print(f"[demo] {index}/{len(steps)} {step.name} -> {step.output}", flush=True)
        if step.command:
            print(f"[demo]   {step.command}", flush=True)
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

    if preset not in CONFIG_SETS:
        raise ValueError(f"ega demo: no demo configs for preset {preset!r}; choose one of {sorted(CONFIG_SETS)}")
    unknown = sorted(set(ablations or ()) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"ega demo: unknown ablations {unknown}; choose from {sorted(ABLATIONS)}")
    if budget not in BUDGETS:
        raise ValueError(f"ega demo: unknown budget {budget!r}; choose one of {list(BUDGETS)}")
    from egakit.sim.stats import world_stats

    trained_ablations = (list(ablations) if ablations else list(ABLATIONS)) if full else []
    configs = CONFIG_SETS[preset]
    runs = Path(runs)
    demo_started = time.perf_counter()
    eval_config = relocate_eval_config(load_config(config_path(configs.evaluation)), runs)
    if reports is not None:
        eval_config.out_dir = str(reports)
    world_dir = Path(eval_config.world_dir)
    # A new world (another seed, or none yet) makes every checkpoint under runs/ stale.
    force = ensure_world(world_dir, preset, seed, force=force) or force
    print(format_world_stats(world_stats(world_dir)))
    if world_only:
        return 0

    def files(config: str, ablation: Optional[str] = None, override: Optional[str] = None) -> list[Path]:
        names = [config, configs.budget_for(config) if budget == "demo" else None,
                 f"{ABLATION_DIR}/{ablation}.yaml" if ablation else override]
        return [config_path(name) for name in names if name]

    phases = [fit_step(f"EGA-V1 {phase}", files(f"{configs.phases}/{phase}.yaml"), runs, world_dir) for phase in PHASES]
    stages = [(stage, None) for stage in BASELINE_STAGES] + (list(FULL_BASELINE_STAGES) if full else [])
    cascades = [fit_step(f"cascade {stage}" + (f" ({Path(override).stem})" if override else ""),
                         files(f"{configs.baselines}/{stage}.yaml", override=override), runs, world_dir)
                for stage, override in stages]
    ablation_steps = [
        fit_step(f"EGA-V1 {phase} ({name})", files(f"{configs.phases}/{phase}.yaml", name), runs, world_dir)
        for name in trained_ablations for phase in PHASES
    ]
    started = time.perf_counter()
    timings = run_steps(phases, force)
    if timings:
        print(f"[demo] the world and EGA-V1's four phases took {time.perf_counter() - demo_started:.0f} s", flush=True)
    timings += run_steps([*cascades, *ablation_steps], force)

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
