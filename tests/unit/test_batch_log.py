"""The master's batch log and summary: a merge reads and rewrites what its batches need, not the
history, and the log's files are the same whether batches come one by one or all at once."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mainstem.durable import canonical_json, write_bytes
from mainstem.flow.status import recent_batches
from mainstem.intake.raw_store import RawRecord, cached_pack, write_record
from mainstem.master import batch_log
from mainstem.master.batch_log import AppliedBatch, BatchSummary, log_update, read_log
from mainstem.master.merge import MasterSpec, refresh_master
from mainstem.master.metrics import master_metrics
from mainstem.master.parts import MANIFEST, Manifest, Partitioning, read_manifest
from mainstem.params import Params, load_params
from mainstem.validation.columnar import parquet_bytes
from mainstem.validation.layout import (
    REPORT,
    ValidatedRecord,
    validated_index,
)
from tests.unit.test_merge_properties import SCHEMA, Inbox, _table

ROOT = Path(__file__).resolve().parents[2]
EMPTY = Manifest("bench/v1", "item_id", Partitioning("range", 8), "fingerprint")


def _batch(number: int) -> AppliedBatch:
    return AppliedBatch(f"b{number:04d}", number, "accepted", f"sha{number}", number % 7, 1)


def _log_files(update: batch_log.LogUpdate, kept: dict[str, bytes]) -> dict[str, bytes]:
    return {**{name: kept[name] for name in update.keep}, **update.write}


@pytest.mark.parametrize("total", [1, 255, 256, 257, 700])
def test_appending_one_batch_at_a_time_writes_the_log_of_all_at_once(total: int) -> None:
    batches = [_batch(n) for n in range(1, total + 1)]
    files: dict[str, bytes] = {}
    summary = BatchSummary()
    for batch in batches:
        tail_name = batch_log.segment_name(summary.count // batch_log.SEGMENT_SIZE)
        tail = (
            [AppliedBatch(**json.loads(line)) for line in files[tail_name].splitlines()]
            if summary.count % batch_log.SEGMENT_SIZE
            else []
        )
        update = log_update(summary, tail, [batch])
        assert len(update.write) == 1  # one segment rewritten per batch, whatever the history
        files = _log_files(update, files)
        summary = summary.after([batch])
    at_once = log_update(BatchSummary(), [], batches)
    assert files == at_once.write
    assert summary == BatchSummary().after(batches)
    assert sorted(files) == batch_log.segment_names(total)


def test_a_tail_that_disagrees_with_the_summary_is_refused() -> None:
    summary = BatchSummary().after([_batch(1), _batch(2)])
    with pytest.raises(ValueError, match="holds 1 batches"):
        log_update(summary, [_batch(1)], [_batch(3)])


class CountingReports(list[dict[str, Any]]):
    """Reports that remember which of them a merge read."""

    def __init__(self, reports: list[dict[str, Any]]) -> None:
        super().__init__(reports)
        self.read: set[int] = set()

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        indexes = range(len(self))[index]
        self.read.update(indexes if isinstance(indexes, range) else [indexes])
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.read.update(range(len(self)))
        return super().__iter__()


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    (tmp_path / "inbox").mkdir()
    return Inbox(tmp_path / "inbox")


def test_a_merge_reads_the_reports_of_its_batches_and_of_the_last_applied_only(
    inbox: Inbox, tmp_path: Path
) -> None:
    master = tmp_path / "master"
    for number in range(12):
        inbox.add(_table([(number, "north", 1.0)]))
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    inbox.add(_table([(99, "south", 2.0)]))
    reports = CountingReports(inbox.reports)
    refresh_master(master, reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    assert reports.read == {11, 12}


def test_the_manifest_stays_the_same_size_as_batches_are_applied(
    inbox: Inbox, tmp_path: Path
) -> None:
    master = tmp_path / "master"
    sizes = []
    for number in range(14):
        inbox.add(_table([(number % 8, "north", 1.0)]))  # updates of one part's keys
        refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
        sizes.append((master / MANIFEST).stat().st_size)
    # the counts and the last sequence gain a digit at batch 10; nothing grows with the batches
    assert max(sizes[10:]) - min(sizes[10:]) == 0


def test_the_log_records_every_batch_in_order_and_the_metrics_sum_the_reports(
    inbox: Inbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_log, "SEGMENT_SIZE", 3)
    master = tmp_path / "master"
    for number in range(8):
        inbox.add(_table([(number, "north", 1.0)]))
        inbox.reports[-1]["rows_rejected"] = number
        refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    inbox.add(pa.table({"item_id": [], "supplier": [], "weight_g": []}, schema=SCHEMA))
    inbox.reports[-1].update(status="rejected", rows_accepted=0, rows_rejected=5)
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    manifest = read_manifest(master)
    assert manifest is not None
    assert [b.batch_id for b in read_log(master, manifest.batches)] == [
        r["batch_id"] for r in inbox.reports
    ]
    assert master_metrics(manifest) == {
        "master_rows": 8,
        "master_parts": 1,
        "batches_merged": 8,
        "batches_rejected": 1,
        "rows_rejected_total": sum(range(8)) + 5,
        "last_batch_id": inbox.reports[-1]["batch_id"],
        "contract": "bench/v1",
    }
    assert sorted(p.name for p in master.glob("_batches-*")) == batch_log.segment_names(9)


def test_a_changed_last_batch_rebuilds_the_master(inbox: Inbox, tmp_path: Path) -> None:
    master = tmp_path / "master"
    inbox.add(_table([(1, "north", 1.0)]))
    inbox.add(_table([(2, "north", 1.0)]))
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    changed = parquet_bytes(_table([(3, "east", 5.0)]))
    inbox.path("b001").write_bytes(changed)
    inbox.reports[-1]["accepted_sha256"] = "another"
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    rebuilt = tmp_path / "rebuilt"
    refresh_master(rebuilt, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    files = {p.name: p.read_bytes() for p in sorted(master.iterdir())}
    assert files == {p.name: p.read_bytes() for p in sorted(rebuilt.iterdir())}


def _raw(raw_dir: Path, number: int) -> str:
    batch_id = f"b{number:03d}"
    record = RawRecord(batch_id, number + 1, f"n{number}", "0" * 32, "0" * 64, 0)
    write_record(raw_dir, record)
    return batch_id


def test_status_lists_the_last_batches_from_the_log_and_the_claimed_one(
    inbox: Inbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_log, "SEGMENT_SIZE", 4)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    params = load_params(tmp_path)
    for number in range(25):
        inbox.add(_table([(number, "north", 1.0)]))
        assert _raw(params.ingest.raw_dir, number) == inbox.reports[-1]["batch_id"]
    refresh_master(params.merge.master_dir, inbox.reports, inbox.path, MasterSpec(EMPTY, SCHEMA))
    claimed = _raw(params.ingest.raw_dir, 25)
    params.ingest.claimed_batch.write_text(json.dumps({"batch_id": claimed}))
    listed = recent_batches(params, limit=10)
    assert [b["batch_id"] for b in listed] == [f"b{n:03d}" for n in range(16, 26)]
    assert listed[-1]["outcome"] == "ingested, not validated yet"
    assert [b["sequence"] for b in listed] == list(range(17, 27))


def _validated(params: Params, batch_id: str, sequence: int, report: dict[str, Any]) -> None:
    """Record `report` in the validated store's index, its file in the DVC cache."""
    data = canonical_json(report)
    md5 = hashlib.md5(data).hexdigest()
    write_bytes(cached_pack(params.root, md5), data)
    record = ValidatedRecord(batch_id, sequence, {}, {REPORT: md5})
    validated_index(params.validate.validated_dir).put([record.to_json()])


def test_status_reads_a_master_written_before_the_log_by_scanning_every_batch(
    tmp_path: Path,
) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    params = load_params(tmp_path)
    ids = [_raw(params.ingest.raw_dir, number) for number in range(3)]
    params.merge.master_dir.mkdir(parents=True)
    listed = [{"batch_id": i, "sequence": n + 1} for n, i in enumerate(ids[:2])]
    (params.merge.master_dir / MANIFEST).write_text(json.dumps({"format": 1, "batches": listed}))
    for sequence, batch_id in enumerate(ids, start=1):
        report = {"status": "accepted", "rows_in": 1, "rows_accepted": 1, "rows_rejected": 0}
        _validated(params, batch_id, sequence, {**report, "reasons": [], "contract": "c/v1"})
    shown = recent_batches(params)
    assert [b["batch_id"] for b in shown] == ids
    assert [b["merged"] for b in shown] == [True, True, False]
