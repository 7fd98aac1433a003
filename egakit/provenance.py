"""Which code produced a result: the git commit of this checkout and whether it differs from it.

Every committed number (perf JSON, evaluation tables) carries this stamp. "Dirty" counts tracked
changes *and* untracked files that git does not ignore, since an uncommitted new module changes
what ran as much as an edited one; the result folders themselves (``OUTPUT_DIRS``) do not count.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
#: Where results are written: their own changes do not make the code dirty.
OUTPUT_DIRS = ("perf/results", "reports")


def _git(repo: Path, *args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` (None when git or the repo is missing)."""
    sha = _git(repo, "rev-parse", "HEAD")
    excluded = [f":(exclude){path}" for path in OUTPUT_DIRS]
    status = _git(repo, "status", "--porcelain", "--", ".", *excluded) if sha else None
    return {"commit": sha, "dirty": None if status is None else bool(status)}


def commit_label(repo: Path = REPO) -> str:
    """``sha``, ``sha-dirty`` or ``"unknown"``: the one-string form of :func:`git_state`."""
    state = git_state(repo)
    if state["commit"] is None:
        return "unknown"
    return state["commit"] + ("-dirty" if state["dirty"] else "")


def file_sha256(path: Any, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes: names the exact checkpoint a result was made with."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
