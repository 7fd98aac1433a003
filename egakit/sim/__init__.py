"""The synthetic LBS ad world with a known ground truth (docs/design.md §1).

- :func:`generate_world` writes a world (presets in :mod:`egakit.sim.presets`);
- :mod:`egakit.sim.io` reads it back with validation;
- :class:`Oracle` scores any allocation + payment on the hidden truth;
- :func:`world_fingerprint` names a world by a hash of its content;
- :func:`world_stats` summarises a world and the measured size of each effect.
"""
from egakit.sim.fingerprint import compute_fingerprint, world_fingerprint
from egakit.sim.generate import generate_world
from egakit.sim.io import check_file_schema, check_known_ids, load_world_meta, read_requests, read_table, request_files, validate_batch
from egakit.sim.oracle import Oracle, Outcome
from egakit.sim.presets import PRESETS, WorldPreset, get_preset
from egakit.sim.stats import world_stats

__all__ = [
    "generate_world", "get_preset", "PRESETS", "WorldPreset", "Oracle", "Outcome", "world_stats",
    "load_world_meta", "read_table", "read_requests", "request_files", "validate_batch", "check_file_schema",
    "check_known_ids", "compute_fingerprint", "world_fingerprint",
]
