"""Run every configured system on the world's evaluation split and write the tables.

One results file per system (``<out_dir>/systems/<slug>.json``) is written when the system has
finished all its seeds; a rerun skips a system whose file was made with the same setup (``force``
re-evaluates), so an interrupted evaluation resumes where it stopped. A results file is keyed by
the world's fingerprint and the SHA-256 of every checkpoint it used: a world regenerated at the
same path, or a retrained checkpoint, makes it stale. The tables are rebuilt from the results
files after every run; a table is only written whole, from results of this world. Progress bars
(tqdm) per system and seed.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from tqdm import tqdm

from egakit.data.world import WorldDataModule
from egakit.auction.mechanism import index_batch
from egakit.batch import RequestBatch
from egakit.evaluation.config import (
    EGA_KIND,
    TABLES,
    EvalConfig,
    EvalConfigError,
    SystemSpec,
    resolve,
)
from egakit.evaluation.loading import load_evaluator, load_system
from egakit.evaluation.report import (
    TABLE_TITLES,
    log_tables_to_wandb,
    markdown,
    plot_scaling,
    scaling_markdown,
    scaling_points,
    system_rows,
    table,
    write_json,
)
from egakit.evaluation.scoring import Scorer
from egakit.evaluation.systems import EGASystem, flops_per_request
from egakit.provenance import commit_label, file_sha256
from egakit.sim.fingerprint import short, world_fingerprint
from egakit.sim.io import load_world_meta
from egakit.sim.oracle import Oracle

RESULTS_FORMAT = 1
SYSTEMS_SUBDIR = "systems"


def git_commit(repo: Optional[Path] = None) -> str:
    """HEAD of the egakit checkout (``-dirty`` when the code differs from it), or ``"unknown"``."""
    return commit_label(repo) if repo is not None else commit_label()


@dataclass
class EvalSummary:
    """What a run did: evaluated / skipped system names and the files written."""

    evaluated: list[str]
    skipped: list[str]
    files: list[str]


class Evaluation:
    """One ``ega evaluate`` run (see the module docstring)."""

    def __init__(self, config: EvalConfig, *, seeds: Optional[int] = None, progress: bool = True, device: str = "cpu",
                 wandb_dir: Optional[str | Path] = None) -> None:
        self.config = config
        self.seeds = seeds or config.seeds
        self.progress = progress
        self.device = torch.device(device)
        self.out_dir = Path(config.out_dir)
        #: Where the W&B run of this evaluation goes (job_type evaluate); None = no W&B run.
        self.wandb_dir = None if wandb_dir is None else Path(wandb_dir)
        #: The tables and plots of the last :meth:`write_tables` (name -> rows / PNG path).
        self.written_tables: dict[str, list[dict[str, Any]]] = {}
        self.written_images: dict[str, Path] = {}
        self.meta = load_world_meta(Path(config.world_dir))
        self.K = int(self.meta["K"])
        self._oracle: Optional[Oracle] = None
        self._evaluators: dict[str, Any] = {}
        split_requests = int(self.meta["requests_per_split"][config.split]) if config.split in self.meta.get("requests_per_split", {}) else None
        if split_requests is None:
            raise EvalConfigError(config.source_path, "split", f"the world has no split {config.split!r}")
        self.requests = split_requests if config.max_requests is None else min(split_requests, config.max_requests)
        if self.requests == 0:
            raise EvalConfigError(config.source_path, "split", f"split {config.split!r} of {config.world_dir} has no requests")
        self.fingerprint = world_fingerprint(config.world_dir)
        split = config.split if config.max_requests is None else f"{config.split}[:{config.max_requests}]"
        # Cross features are cheap to gather and any system may read them: always on.
        self.data = WorldDataModule(
            config.world_dir, batch_size=config.batch_size, eval_mode="full", cross_features=True,
            splits={"test": split}, shuffle=False,
        )

    # ------------------------------------------------------------------ shared resources
    @property
    def oracle(self) -> Oracle:
        if self._oracle is None:
            self._oracle = Oracle.from_world(self.config.world_dir, device=self.device)
        return self._oracle

    def evaluator(self, seed: int):
        path = resolve(self.config.evaluator, seed)
        if path is None:
            return None
        if path not in self._evaluators:
            model = load_evaluator(path).to(self.device)
            if model.config.K != self.K:
                raise EvalConfigError(self.config.source_path, "evaluator", f"{path} has K={model.config.K}, the world K={self.K}")
            self._evaluators[path] = model
        return self._evaluators[path]

    def world_info(self) -> dict[str, Any]:
        return {
            "dir": str(self.config.world_dir),
            "fingerprint": self.fingerprint,
            "preset": self.meta.get("preset"),
            "seed": self.meta.get("seed"),
            "split": self.config.split,
            "requests": self.requests,
            "K": self.K,
            "candidates_mean": self.meta.get("candidates_per_request", {}).get("mean"),
        }

    def batches(self) -> Iterator[RequestBatch]:
        """The split's requests, features gathered, padded repeats dropped (they carry no labels)."""
        for batch in self.data.test_dataloader():
            batch = self.data.fill_features(batch.to(self.device))
            real = batch.label_mask.any(1)
            if not bool(real.all()):
                if not bool(real.any()):
                    continue
                batch = index_batch(batch, real.nonzero().squeeze(1))
            yield batch

    # ------------------------------------------------------------------ checks
    def missing_checkpoints(self, specs: Sequence[SystemSpec]) -> list[str]:
        problems = []
        for seed in range(self.seeds):
            for spec in specs:
                for role, template in spec.checkpoints().items():
                    path = resolve(template, seed)
                    if not Path(path).is_file():
                        problems.append(f"{spec.name} ({role}, seed {seed}): {path}")
            if self.config.evaluator and not Path(resolve(self.config.evaluator, seed)).is_file():
                problems.append(f"evaluator (seed {seed}): {resolve(self.config.evaluator, seed)}")
        return sorted(set(problems))

    # ------------------------------------------------------------------ one system
    def results_path(self, spec: SystemSpec) -> Path:
        return self.out_dir / SYSTEMS_SUBDIR / f"{spec.slug}.json"

    def evaluate_system(self, spec: SystemSpec) -> dict[str, Any]:
        started = time.perf_counter()
        per_seed, flops = [], None
        n_batches = -(-self.requests // self.config.batch_size)
        for seed in range(self.seeds):
            system = load_system(spec, seed, self.oracle, self.K)
            if isinstance(system, EGASystem) and system.model.config.K != self.K:
                raise EvalConfigError(self.config.source_path, spec.name, f"model K={system.model.config.K}, world K={self.K}")
            if isinstance(system, EGASystem):
                system.model.to(self.device)
            elif hasattr(system, "pipeline"):
                system.pipeline.to(self.device)
            torch.manual_seed(seed)
            scorer = Scorer(self.oracle, self.evaluator(seed), self.config.gammas, self.config.psi_requests, seed)
            bar = tqdm(total=n_batches, desc=f"{spec.name} [seed {seed}]", unit="batch", disable=not self.progress, file=sys.stderr)
            for batch in self.batches():
                if flops is None and seed == 0 and "scaling" in spec.tables:
                    flops = flops_per_request(system, batch)
                scorer.update(system, batch, system.run(batch))
                bar.update(1)
            bar.close()
            if scorer.requests == 0:
                raise EvalConfigError(self.config.source_path, "split", f"{spec.name} [seed {seed}]: no request was scored")
            per_seed.append({"seed": seed, "requests": scorer.requests, "metrics": scorer.compute()})
        return {
            "format": RESULTS_FORMAT,
            "system": spec.name,
            "kind": spec.kind,
            "tables": list(spec.tables),
            "layers": spec.layers,
            "flops_per_request": flops,
            "per_seed": per_seed,
            "setup": self.setup(spec),
            "world": self.world_info(),
            "seconds": round(time.perf_counter() - started, 2),
        }

    # ------------------------------------------------------------------ the run
    def run(self, *, force: bool = False, only: Optional[Sequence[str]] = None) -> EvalSummary:
        specs = list(self.config.systems)
        if only:
            unknown = sorted(set(only) - {s.name for s in specs})
            if unknown:
                raise EvalConfigError(self.config.source_path, "--systems", f"unknown system {unknown[0]!r}")
            specs = [s for s in specs if s.name in only]
        todo, skipped = [], []
        for spec in specs:
            reason = "--force" if force else self.stale_reason(spec)
            if reason is None:
                skipped.append(spec.name)
                print(f"[evaluate] {spec.name}: results exist ({self.results_path(spec)}), skipped", file=sys.stderr)
            else:
                todo.append(spec)
                if self.results_path(spec).is_file():
                    print(f"[evaluate] {spec.name}: re-evaluating ({reason})", file=sys.stderr)
        missing = self.missing_checkpoints(todo)
        if missing:
            raise EvalConfigError(self.config.source_path, "checkpoints", "missing files:\n  " + "\n  ".join(missing))
        for spec in todo:
            result = self.evaluate_system(spec)
            write_json(self.results_path(spec), result)
            print(f"[evaluate] {spec.name}: done in {result['seconds']} s -> {self.results_path(spec)}", file=sys.stderr)
        files = self.write_tables(partial_ok=bool(only))
        if self.wandb_dir is not None:
            self.log_to_wandb()
        return EvalSummary(evaluated=[s.name for s in todo], skipped=skipped, files=files)

    def log_to_wandb(self) -> Optional[str]:
        """One W&B run (job_type ``evaluate``, named after the config, offline unless WANDB_MODE
        says otherwise) holding the setup, the tables as W&B tables and the plots as images;
        returns the run's directory (None without wandb)."""
        from egakit.tracking import offline_run, run_identity

        identity = run_identity("evaluate", self.config.source_path, default_name="evaluate")
        config = {"world": self.world_info(), "seeds": self.seeds, "split": self.config.split,
                  "systems": [asdict(s) for s in self.config.systems], "commit": git_commit()}
        with offline_run("evaluate", identity["name"], group=identity["group"], config=config,
                         save_dir=self.wandb_dir) as run:
            if run is None:
                return None
            log_tables_to_wandb(run, self.written_tables, self.written_images)
            return str(Path(run.dir).parent)

    def setup(self, spec: SystemSpec) -> dict[str, Any]:
        """Everything a system's numbers depend on, the world's and checkpoints' contents included
        (by hash): a results file made with another setup is re-evaluated rather than skipped."""
        return {
            "spec": asdict(spec),
            "seeds": self.seeds,
            "world_fingerprint": self.fingerprint,
            "checkpoints": self.checkpoint_hashes(spec),
            "split": self.config.split,
            "requests": self.requests,
            "batch_size": self.config.batch_size,
            "gammas": list(self.config.gammas),
            "psi_requests": self.config.psi_requests,
            "evaluator": self.config.evaluator,
        }

    def checkpoint_hashes(self, spec: SystemSpec) -> dict[str, Optional[str]]:
        """``{"<role> seed <s>": sha256}`` of every checkpoint ``spec`` and the evaluator read
        (None where a file is missing: :meth:`missing_checkpoints` names those)."""
        paths = {f"{role} seed {seed}": resolve(template, seed)
                 for seed in range(self.seeds) for role, template in spec.checkpoints().items()}
        if self.config.evaluator:
            paths.update({f"evaluator seed {seed}": resolve(self.config.evaluator, seed) for seed in range(self.seeds)})
        return {key: file_sha256(path) if Path(path).is_file() else None for key, path in paths.items()}

    def stale_reason(self, spec: SystemSpec) -> Optional[str]:
        """None when the system's results file exists and was made with this setup, else why not."""
        path = self.results_path(spec)
        if not path.is_file():
            return "no results yet"
        try:
            stored = json.loads(path.read_text()).get("setup")
        except json.JSONDecodeError:
            return "unreadable results file"
        if stored is None or not isinstance(stored, dict):
            return "results file without its setup"
        mine = json.loads(json.dumps(self.setup(spec)))  # tuples → lists, as stored
        changed = sorted(k for k in set(mine) | set(stored) if mine.get(k) != stored.get(k))
        return None if not changed else f"{', '.join(changed)} changed"

    def load_results(self, spec: SystemSpec) -> Optional[dict[str, Any]]:
        path = self.results_path(spec)
        if not path.is_file():
            return None
        result = json.loads(path.read_text())
        if result.get("format") != RESULTS_FORMAT:
            raise EvalConfigError(str(path), "format", f"results format {result.get('format')!r}; rerun with --force")
        return result

    def write_tables(self, *, partial_ok: bool = False) -> list[str]:
        """Rebuild every table whose systems all have results from this world.

        Results from another world (another fingerprint) are refused, naming them. A table with
        systems that have no results yet is not written: an error, unless ``partial_ok`` (a run
        restricted with ``--systems``), where it is skipped with a message.
        """
        commit, world, files = git_commit(), self.world_info(), []
        for name in TABLES:
            specs = [s for s in self.config.systems if name in s.tables]
            if not specs:
                continue
            results = [(s, self.load_results(s)) for s in specs]
            self.check_same_world(name, results)
            missing = [s.name for s, r in results if r is None]
            if missing:
                message = f"{name} not written: no results yet for {', '.join(missing)}"
                if not partial_ok:
                    raise EvalConfigError(self.config.source_path, "systems", message)
                print(f"[evaluate] {message}", file=sys.stderr)
                continue
            done = [r for _, r in results]
            if name == "scaling":
                points = scaling_points(done, self.config.scaling.metric, self.config.scaling.source)
                png = self.out_dir / "scaling.png"
                plot_scaling(points, self.config.scaling.metric, self.config.scaling.source, png)
                self.written_images[name] = png
                md = self.out_dir / "scaling.md"
                md.write_text(scaling_markdown(points, self.config.scaling.metric, self.config.scaling.source, commit))
                files += [str(png), str(md)]
                continue
            rows = [row for r in done for row in system_rows(r)]
            self.written_tables[name] = rows
            out_json, out_md = self.out_dir / f"{name}.json", self.out_dir / f"{name}.md"
            write_json(out_json, table(rows, world, commit))
            out_md.write_text(markdown(TABLE_TITLES[name], rows, world, commit))
            files += [str(out_json), str(out_md)]
        return files

    def check_same_world(self, table_name: str, results: Sequence[tuple[SystemSpec, Optional[dict]]]) -> None:
        """Refuse to build ``table_name`` from results measured on another world."""
        foreign = [f"{spec.name} (world {short(str(r.get('world', {}).get('fingerprint')))})"
                   for spec, r in results if r is not None and r.get("world", {}).get("fingerprint") != self.fingerprint]
        if foreign:
            raise EvalConfigError(
                self.config.source_path, "world",
                f"{table_name} would mix worlds: {', '.join(foreign)} were measured on another world than "
                f"{short(self.fingerprint)} ({self.config.world_dir}); re-evaluate them (--force)",
            )


def run_evaluation(
    config: EvalConfig,
    *,
    seeds: Optional[int] = None,
    force: bool = False,
    only: Optional[Sequence[str]] = None,
    progress: bool = True,
    device: str = "cpu",
    wandb_dir: Optional[str | Path] = None,
) -> EvalSummary:
    """Evaluate ``config``'s systems (skipping finished ones) and write the tables; with
    ``wandb_dir``, also log them to a W&B run there (:meth:`Evaluation.log_to_wandb`)."""
    evaluation = Evaluation(config, seeds=seeds, progress=progress, device=device, wandb_dir=wandb_dir)
    return evaluation.run(force=force, only=only)


__all__ = ["EGA_KIND", "EvalSummary", "Evaluation", "git_commit", "run_evaluation"]
