"""The world's fingerprint: one content hash of everything a world wrote.

Every result egakit publishes is measured on a world, so a report, checkpoint or results file
names the world by this hash rather than by its path: a world regenerated at the same path with
other settings (or by another egakit) gets another fingerprint, and results made on it are not
mixed with earlier ones.

The hash is SHA-256 over, in a fixed order:

- every file under the world's tables (``schema.TABLES``: the truth and its parameter file
  included), each as its path relative to the world directory, its size and its bytes;
- world.json itself, as canonical JSON (sorted keys) without its ``fingerprint`` key.

Other files a user leaves in the directory do not count.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Union

from egakit.errors import WorldDataError
from egakit.sim import schema
from egakit.sim.io import WORLD_JSON

#: The key of world.json that holds the fingerprint.
FINGERPRINT_KEY = "fingerprint"
#: How many hex digits name a world in tables and logs (the full hash is kept in world.json).
SHORT_LENGTH = 12
_CHUNK_BYTES = 1 << 20

PathType = Union[str, Path]


def world_files(world_dir: PathType) -> list[Path]:
    """The files a world is made of (its tables, the truth and its parameters), sorted by path
    relative to ``world_dir``."""
    root = Path(world_dir)
    files: list[Path] = []
    for top in sorted({path.split("/")[0] for path, _ in schema.TABLES.values()}):
        entry = root / top
        if entry.is_dir():
            files.extend(p for p in entry.rglob("*") if p.is_file())
        elif entry.is_file():
            files.append(entry)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def compute_fingerprint(world_dir: PathType, meta: dict) -> str:
    """SHA-256 (hex) of the world's files and of ``meta`` (world.json without its fingerprint)."""
    root = Path(world_dir)
    digest = hashlib.sha256()
    for path in world_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    body = {key: value for key, value in meta.items() if key != FINGERPRINT_KEY}
    digest.update(b"world.json\0")
    digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def short(fingerprint: str) -> str:
    """The first :data:`SHORT_LENGTH` hex digits, as tables print a world."""
    return fingerprint[:SHORT_LENGTH]


def stamp_world(world_dir: PathType, meta: dict) -> dict:
    """Write ``meta`` with its fingerprint into world_dir/world.json (after every other file) and
    return it."""
    meta = dict(meta)
    meta[FINGERPRINT_KEY] = compute_fingerprint(world_dir, meta)
    path = Path(world_dir) / WORLD_JSON
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(path)
    return meta


def world_fingerprint(world_dir: PathType, *, verify: bool = False) -> str:
    """The fingerprint recorded in world_dir/world.json.

    With ``verify`` the files are hashed again and a world whose content no longer matches its
    record (a file edited, added or removed since it was written) is refused. A world written
    before fingerprints existed has none: it is computed from its content.
    """
    path = Path(world_dir) / WORLD_JSON
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorldDataError(path, None, None, f"cannot read the world's record: {exc}") from exc
    recorded = meta.get(FINGERPRINT_KEY)
    if recorded is None or verify:
        actual = compute_fingerprint(world_dir, meta)
        if recorded is not None and actual != recorded:
            raise WorldDataError(
                path, FINGERPRINT_KEY, None,
                f"the world's files changed since it was written (recorded {short(recorded)}, "
                f"content {short(actual)}): regenerate it with `ega world`",
            )
        return actual
    return recorded
