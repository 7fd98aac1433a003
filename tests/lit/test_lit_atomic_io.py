"""LocalAtomicCheckpointIO: a save stages its file in the destination directory (never $TMPDIR)
and leaves nothing behind when it fails; loads are weights_only whatever the caller asks."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from egakit.checkpoint import CheckpointError
from egakit.lit.interrupt import TMP_PREFIX, LocalAtomicCheckpointIO


class ListsDirectories:
    """Pickling this records what the destination and $TMPDIR hold at that moment (mid-save)."""

    seen: dict[str, list[str]] = {}

    def __init__(self, dest: Path, tmp: Path, fail: bool = False) -> None:
        self.dest, self.tmp, self.fail = dest, tmp, fail

    def __reduce__(self):
        ListsDirectories.seen = {"dest": sorted(os.listdir(self.dest)), "tmp": sorted(os.listdir(self.tmp))}
        if self.fail:
            raise pickle.PicklingError("disk full (simulated)")
        return (int, (0,))


@pytest.fixture()
def dirs(tmp_path, monkeypatch):
    dest, tmp = tmp_path / "ckpt", tmp_path / "tmpdir"
    dest.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    return dest, tmp


def test_a_save_stages_its_file_in_the_destination_directory(dirs):
    dest, tmp = dirs
    LocalAtomicCheckpointIO().save_checkpoint(
        {"state_dict": {"w": torch.ones(2)}, "probe": ListsDirectories(dest, tmp)}, dest / "last.ckpt")
    assert len(ListsDirectories.seen["dest"]) == 1 and ListsDirectories.seen["dest"][0].startswith(TMP_PREFIX)
    assert ListsDirectories.seen["tmp"] == []
    assert os.listdir(dest) == ["last.ckpt"] and os.listdir(tmp) == []


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(dirs):
    dest, tmp = dirs
    io = LocalAtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, dest / "last.ckpt")
    with pytest.raises(pickle.PicklingError):
        io.save_checkpoint({"state_dict": {}, "probe": ListsDirectories(dest, tmp, fail=True)}, dest / "last.ckpt")
    assert os.listdir(dest) == ["last.ckpt"] and os.listdir(tmp) == []
    assert torch.equal(io.load_checkpoint(dest / "last.ckpt")["state_dict"]["w"], torch.zeros(2))


def test_loads_are_weights_only_even_when_asked_otherwise(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        LocalAtomicCheckpointIO().load_checkpoint(tmp_path / "evil.ckpt", weights_only=False)
    assert not marker.exists()
