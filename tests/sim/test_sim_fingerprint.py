"""The world's fingerprint: a content hash that changes with any written byte and only then."""
from __future__ import annotations

import json
import shutil

import pytest

from egakit.errors import WorldDataError
from egakit.sim import generate_world, world_fingerprint
from egakit.sim.fingerprint import FINGERPRINT_KEY, compute_fingerprint, short, world_files


@pytest.fixture()
def world_copy(tiny_world, tmp_path):
    out = tmp_path / "world"
    shutil.copytree(tiny_world, out)
    return out


def _meta(world):
    return json.loads((world / "world.json").read_text())


def test_world_json_records_the_fingerprint_of_what_was_written(tiny_world):
    recorded = _meta(tiny_world)[FINGERPRINT_KEY]
    assert len(recorded) == 64 and int(recorded, 16) >= 0
    assert world_fingerprint(tiny_world) == recorded
    assert world_fingerprint(tiny_world, verify=True) == recorded
    names = {p.relative_to(tiny_world).as_posix() for p in world_files(tiny_world)}
    assert {"ads.parquet", "candidate_sets.parquet", "truth/params.json"} <= names
    assert any(n.startswith("requests/") for n in names)


def test_same_seed_same_fingerprint_other_seed_other(tiny_world, tmp_path):
    again = generate_world("tiny", tmp_path / "again", seed=0, progress=False)
    other = generate_world("tiny", tmp_path / "other", seed=1, progress=False)
    assert again[FINGERPRINT_KEY] == _meta(tiny_world)[FINGERPRINT_KEY]
    assert other[FINGERPRINT_KEY] != again[FINGERPRINT_KEY]


def test_unrelated_files_and_copies_keep_it(world_copy):
    before = world_fingerprint(world_copy, verify=True)
    (world_copy / "notes.txt").write_text("a user's file beside the world")
    assert world_fingerprint(world_copy, verify=True) == before


@pytest.mark.parametrize("rel", ["ads.parquet", "truth/params.json", "requests"])
def test_one_changed_byte_changes_it_and_verify_refuses(world_copy, rel):
    target = world_copy / rel
    if target.is_dir():
        target = sorted(p for p in target.rglob("*") if p.is_file())[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    meta = _meta(world_copy)
    assert compute_fingerprint(world_copy, meta) != meta[FINGERPRINT_KEY]
    assert world_fingerprint(world_copy) == meta[FINGERPRINT_KEY]  # the record, unverified
    with pytest.raises(WorldDataError, match="changed since it was written"):
        world_fingerprint(world_copy, verify=True)


def test_a_removed_file_or_edited_record_changes_it(world_copy):
    meta = _meta(world_copy)
    meta["seed"] = 99
    assert compute_fingerprint(world_copy, meta) != meta[FINGERPRINT_KEY]
    extra = world_copy / "truth" / "extra.bin"
    extra.write_bytes(b"\0")
    assert compute_fingerprint(world_copy, _meta(world_copy)) != _meta(world_copy)[FINGERPRINT_KEY]
    extra.unlink()
    (world_copy / "users.parquet").unlink()
    assert compute_fingerprint(world_copy, _meta(world_copy)) != _meta(world_copy)[FINGERPRINT_KEY]


def test_a_world_without_a_record_is_hashed_on_demand(world_copy):
    meta = _meta(world_copy)
    recorded = meta.pop(FINGERPRINT_KEY)
    (world_copy / "world.json").write_text(json.dumps(meta))
    assert world_fingerprint(world_copy) == recorded
    assert short(recorded) == recorded[:12]
