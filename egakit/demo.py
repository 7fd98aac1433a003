"""`make demo` / `ega demo`: the main job on a small built-in world.

Stage 1 (foundation): make the world (skipped when a world of the same preset and seed is already
there) and print its statistics: requests, candidates per request, CTR by slot and the size of
each externality and cross effect on the ground truth.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from egakit.reporting import format_world_stats

WORLD_SUBDIR = "world"


def ensure_world(out_dir: Path, preset: str, seed: int) -> Path:
    """Generate the world under ``out_dir/world`` unless the same preset and seed is there."""
    from egakit.sim import generate_world

    world_dir = out_dir / WORLD_SUBDIR
    meta_path = world_dir / "world.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("preset") == preset and meta.get("seed") == seed:
            print(f"[demo] reusing world {world_dir} (preset={preset}, seed={seed})")
            return world_dir
    started = time.perf_counter()
    generate_world(preset, world_dir, seed=seed, progress=True)
    print(f"[demo] world {preset!r} generated in {time.perf_counter() - started:.1f} s -> {world_dir}")
    return world_dir


def run_demo(out_dir: str | Path, preset: str = "small", seed: int = 0) -> int:
    from egakit.sim.stats import world_stats

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world_dir = ensure_world(out, preset, seed)
    print(format_world_stats(world_stats(world_dir)))
    return 0
