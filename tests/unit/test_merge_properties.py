"""Invariants of the incremental master, checked on random batches (hypothesis).

Applying batches one at a time must leave the same files, byte for byte, as building the master
from all of them at once; applying a batch the master already holds must change nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mainstem.master import batch_log, merge
from mainstem.master.merge import MasterSpec, refresh_master, upsert
from mainstem.master.parts import Manifest, Partitioning
from mainstem.validation.columnar import parquet_bytes

SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("supplier", pa.string(), nullable=False),
        pa.field("weight_g", pa.float64(), nullable=True),
    ]
)
TEXT_SCHEMA = pa.schema(
    [pa.field("code", pa.string(), nullable=False), pa.field("weight_g", pa.float64())]
)
EMPTY = Manifest("bench/v1", "item_id", Partitioning("range", 8), "fingerprint")
TEXT_EMPTY = Manifest("bench/v1", "code", Partitioning("hash", 3), "fingerprint")

row = st.tuples(
    st.integers(min_value=0, max_value=60),
    st.sampled_from(["north", "south", "east"]),
    st.one_of(st.none(), st.floats(min_value=1.0, max_value=900.0)),
)
batch = st.lists(row, max_size=25, unique_by=lambda r: r[0])
batches = st.lists(batch, min_size=1, max_size=5)


def _table(rows: list[tuple[int, str, float | None]]) -> pa.Table:
    keys, suppliers, weights = zip(*rows, strict=True) if rows else ([], [], [])
    return pa.table(
        {"item_id": list(keys), "supplier": list(suppliers), "weight_g": list(weights)},
        schema=SCHEMA,
    )


class Inbox:
    """Batches as the validated store holds them: accepted Parquet files plus their reports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reports: list[dict[str, object]] = []

    def add(self, table: pa.Table) -> None:
        data = parquet_bytes(table)
        batch_id = f"b{len(self.reports):03d}"
        (self.root / f"{batch_id}.parquet").write_bytes(data)
        self.reports.append(
            {
                "batch_id": batch_id,
                "sequence": len(self.reports) + 1,
                "status": "accepted",
                "accepted_sha256": hashlib.sha256(data).hexdigest(),
                "rows_accepted": table.num_rows,
            }
        )

    def path(self, batch_id: str) -> Path:
        return self.root / f"{batch_id}.parquet"


def _files(master: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(master.iterdir())}


def _scratch(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(parents=True)
    return path


_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(history=batches, workers=st.sampled_from([1, 3]))
def test_incremental_merge_equals_rebuild(
    tmp_path_factory: pytest.TempPathFactory, history: list[list], workers: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("case")
    inbox = Inbox(_scratch(tmp_path, "inbox"))
    incremental, rebuilt = tmp_path / "incremental", tmp_path / "rebuilt"
    for rows in history:
        inbox.add(_table(rows))
        refresh_master(incremental, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA), workers)
    refresh_master(rebuilt, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA), workers)
    assert _files(incremental) == _files(rebuilt)


@_SETTINGS
@given(history=st.lists(batch, min_size=1, max_size=6), segment=st.sampled_from([1, 2]))
def test_incremental_merge_equals_rebuild_across_log_segments(
    tmp_path_factory: pytest.TempPathFactory, history: list[list], segment: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("case")
    inbox = Inbox(_scratch(tmp_path, "inbox"))
    incremental, rebuilt = tmp_path / "incremental", tmp_path / "rebuilt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_log, "SEGMENT_SIZE", segment)
        for rows in history:
            inbox.add(_table(rows))
            refresh_master(incremental, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
        refresh_master(rebuilt, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    assert _files(incremental) == _files(rebuilt)
    assert len(list(incremental.glob("_batches-*"))) == -(-len(history) // segment)


@_SETTINGS
@given(history=batches)
def test_merge_keeps_the_latest_row_of_each_key(
    tmp_path_factory: pytest.TempPathFactory, history: list[list]
) -> None:
    tmp_path = tmp_path_factory.mktemp("case")
    inbox = Inbox(_scratch(tmp_path, "inbox"))
    master = tmp_path / "master"
    expected: dict[int, tuple[int, str, float | None]] = {}
    for rows in history:
        inbox.add(_table(rows))
        refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
        expected.update({r[0]: r for r in rows})
    if not expected:
        return
    stored = pa.concat_tables(pq.read_table(path) for path in sorted(master.glob("part-*.parquet")))
    assert stored.to_pylist() == _table([expected[k] for k in sorted(expected)]).to_pylist()


@_SETTINGS
@given(history=batches, again=batch)
def test_applying_the_same_batch_twice_equals_once(
    tmp_path_factory: pytest.TempPathFactory, history: list[list], again: list
) -> None:
    tmp_path = tmp_path_factory.mktemp("case")
    inbox = Inbox(_scratch(tmp_path, "inbox"))
    master = tmp_path / "master"
    for rows in [*history, again]:
        inbox.add(_table(rows))
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    once = _files(master)
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    assert _files(master) == once

    twice = Inbox(_scratch(tmp_path, "twice"))
    for rows in [*history, again, again]:
        twice.add(_table(rows))
    other = tmp_path / "other"
    refresh_master(other, twice.reports, twice.path, MasterSpec(EMPTY, SCHEMA))
    parts = {name: data for name, data in _files(other).items() if name.startswith("part-")}
    assert parts == {name: data for name, data in once.items() if name.startswith("part-")}


@_SETTINGS
@given(history=batches)
def test_text_keys_incremental_equals_rebuild(
    tmp_path_factory: pytest.TempPathFactory, history: list[list]
) -> None:
    tmp_path = tmp_path_factory.mktemp("case")
    inbox = Inbox(_scratch(tmp_path, "inbox"))
    for rows in history:
        inbox.add(
            pa.table(
                {"code": [f"k{r[0]:02d}" for r in rows], "weight_g": [r[2] for r in rows]},
                schema=TEXT_SCHEMA,
            )
        )
        refresh_master(
            tmp_path / "incremental", inbox.reports, inbox.path, MasterSpec(TEXT_EMPTY, TEXT_SCHEMA)
        )
    refresh_master(
        tmp_path / "rebuilt", inbox.reports, inbox.path, MasterSpec(TEXT_EMPTY, TEXT_SCHEMA)
    )
    assert _files(tmp_path / "incremental") == _files(tmp_path / "rebuilt")


@settings(max_examples=200, deadline=None)
@given(existing=batch, updates=batch)
def test_upsert_by_runs_equals_upsert_by_sorting(existing: list, updates: list) -> None:
    stored = _table(sorted(existing)).sort_by("item_id")
    fresh = _table(updates)
    by_runs = upsert(stored, fresh, "item_id")
    limit = merge._MAX_RUNS
    merge._MAX_RUNS = -1
    try:
        by_sorting = upsert(stored, fresh, "item_id")
    finally:
        merge._MAX_RUNS = limit
    assert by_runs.equals(by_sorting)
    assert parquet_bytes(by_runs) == parquet_bytes(by_sorting)
