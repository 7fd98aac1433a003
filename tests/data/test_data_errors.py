"""Bad world data reaching the stores or the stream gives a WorldDataError naming file, field, row
(docs/design.md §12), also from inside a DataLoader worker."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from egakit.data.request_stream import RequestStream
from egakit.errors import WorldDataError
from egakit.features import CandidateSets, LocalAdStore
from egakit.sim.io import request_files

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")

BAD_ROW = 3


def _rewrite(path: Path, edit) -> None:
    """Rewrite a Parquet file with ``edit(rows)`` applied to its rows, schema and metadata kept."""
    pf = pq.ParquetFile(path)
    rows_per_group = pf.metadata.row_group(0).num_rows
    table = pf.read()
    rows = table.to_pylist()
    edit(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path, row_group_size=rows_per_group)


@pytest.fixture()
def world_copy(tiny_world, tmp_path) -> Path:
    out = tmp_path / "world"
    shutil.copytree(tiny_world, out, ignore=shutil.ignore_patterns("truth"))
    return out


def test_exposed_ad_outside_the_candidate_set(world_copy):
    part = request_files(world_copy, "pretrain")[0]
    store = LocalAdStore(world_copy)
    sets = CandidateSets(world_copy, store)

    def edit(rows):
        row = rows[BAD_ROW]
        inside = set(sets.ids(row["candidate_set_id"]).tolist())
        row["exposed_ids"][0] = next(int(a) for a in store.ids if int(a) not in inside)

    _rewrite(part, edit)
    stream = RequestStream(world_copy, "pretrain", mode="full", limit=BAD_ROW + 1)
    with pytest.raises(WorldDataError) as err:
        list(stream)
    assert err.value.field == "exposed_ids" and err.value.row == BAD_ROW and err.value.path == str(part)
    assert "not in candidate set" in str(err.value)
    # From a worker, torch rebuilds the exception from its formatted message: the type survives
    # and the message still names the file, the field and the row.
    stream = RequestStream(world_copy, "pretrain", mode="full", limit=BAD_ROW + 1, num_workers=1)
    with pytest.raises(WorldDataError) as err:
        list(DataLoader(stream, batch_size=None, num_workers=1))
    assert "WorldDataError" in str(err.value) and f"{part}: field 'exposed_ids' row {BAD_ROW}" in str(err.value)


def test_candidate_set_with_unknown_ad(world_copy):
    path = world_copy / "candidate_sets.parquet"
    store = LocalAdStore(world_copy)
    _rewrite(path, lambda rows: rows[BAD_ROW]["ad_ids"].append(int(store.ids.max()) + 1))
    with pytest.raises(WorldDataError) as err:
        CandidateSets(world_copy, store)
    assert err.value.field == "ad_ids" and err.value.row == BAD_ROW and "unknown id" in str(err.value)


def test_negative_bid_refused_by_the_local_store(world_copy):
    path = world_copy / "ads.parquet"
    _rewrite(path, lambda rows: rows[BAD_ROW].update(bid=-1.0))
    with pytest.raises(WorldDataError) as err:
        LocalAdStore(world_copy)
    assert err.value.field == "bid" and err.value.row == BAD_ROW
