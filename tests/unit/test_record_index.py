"""The segment index: records by sequence in few files, ids in at most 256 shards."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from mainstem.durable import canonical_json
from mainstem.errors import IndexLayoutError, StorageError
from mainstem.flow.index_upgrade import fold_indexes
from mainstem.intake.raw_store import raw_index, record_of, records
from mainstem.intake.raw_tombstones import tombstone_of
from mainstem.intake.record_index import ID, SEQ, RecordIndex, legacy_records, read_lines
from mainstem.validation.layout import last_validated, validated_index
from mainstem.validation.layout import record_of as validated_record_of


def _record(sequence: int) -> dict[str, Any]:
    return {
        "batch_id": f"{sequence * 7919:064x}",
        "sequence": sequence,
        "name": f"batch-{sequence:05d}",
        "pack_md5": f"{sequence:032x}",
        "pack_sha256": f"{sequence:064x}",
        "pack_size": sequence,
    }


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.jsonl")}


def test_records_read_back_by_sequence_by_id_and_in_order(tmp_path: Path) -> None:
    index = RecordIndex(tmp_path, 4)
    index.put([_record(n) for n in range(1, 11)])
    assert index.last() == 10
    assert index.at(7) == _record(7)
    assert index.of(_record(9)["batch_id"]) == _record(9)
    assert index.of("no such batch") is None
    assert index.at(11) is None
    assert index.at(0) is None
    assert [r["sequence"] for r in index.between(3, 9)] == list(range(3, 10))


def test_the_same_records_give_the_same_bytes_in_any_order_of_writing(tmp_path: Path) -> None:
    wanted = [_record(n) for n in range(1, 300)]
    shuffled = wanted[:]
    random.Random(19).shuffle(shuffled)
    RecordIndex(tmp_path / "at-once", 16).put(wanted)
    one_by_one = RecordIndex(tmp_path / "one-by-one", 16)
    for record in shuffled:
        one_by_one.put([record])
    assert _tree(tmp_path / "at-once") == _tree(tmp_path / "one-by-one")


def test_git_tracks_one_file_per_segment_and_at_most_256_shards(tmp_path: Path) -> None:
    index = RecordIndex(tmp_path, 256)
    index.put([_record(n) for n in range(1, 10_001)])
    files = index.files()
    segments = [p for p in files if p.parent.name == SEQ]
    shards = [p for p in files if p.parent.name == ID]
    assert len(segments) == 10_000 // 256 + 1
    assert len(shards) <= 256
    assert sum(len(read_lines(p)) for p in shards) == 10_000


def test_a_record_written_again_replaces_its_line(tmp_path: Path) -> None:
    index = RecordIndex(tmp_path, 8)
    index.put([_record(n) for n in range(1, 4)])
    again = {**_record(2), "name": "renamed"}
    index.put([again])
    assert index.at(2) == again
    assert [r["sequence"] for r in index.between(1, 3)] == [1, 2, 3]
    assert len(read_lines(index.segment_path(2))) == 3


def test_a_record_counts_only_once_the_half_written_last_is_there(tmp_path: Path) -> None:
    raw = RecordIndex(tmp_path / "raw", 8)  # segment first, the id line makes it count
    raw.put([_record(1)])
    shard = next((raw.folder / ID).iterdir())
    shard.unlink()  # a crash between the two writes
    assert raw.of(_record(1)["batch_id"]) is None
    validated = RecordIndex(tmp_path / "validated", 8, ids_first=True)
    validated.put([_record(1), _record(2)])
    segment = validated.segment_path(2)
    segment.write_bytes(segment.read_bytes().splitlines(keepends=True)[0])  # lost the last line
    assert validated.last() == 1
    assert validated.of(_record(2)["batch_id"]) is None


def test_a_damaged_index_file_names_itself_and_the_fix(tmp_path: Path) -> None:
    index = RecordIndex(tmp_path, 8)
    index.put([_record(1)])
    index.segment_path(1).write_text("<<<<<<< HEAD\n")
    with pytest.raises(StorageError) as raised:
        index.last()
    message = str(raised.value)
    assert str(index.segment_path(1)) in message
    assert "line 1" in message
    assert "git checkout --" in message


def test_an_index_of_the_old_layout_is_refused_not_read_as_empty(tmp_path: Path) -> None:
    old = tmp_path / "index" / "seq" / "00" / "00" / "00" / "01.json"
    old.parent.mkdir(parents=True)
    old.write_bytes(canonical_json(_record(1)))
    with pytest.raises(IndexLayoutError, match="mainstem upgrade"):
        RecordIndex(tmp_path / "index", 256).last()


def _legacy(index_parent: Path, record: dict[str, Any], counted: bool = True) -> None:
    """One record in the layout before segments: a file by sequence, a file by id."""
    digits = f"{record['sequence']:08d}"
    by_seq = index_parent.joinpath("index", "seq", digits[:2], digits[2:4], digits[4:6])
    by_id = index_parent.joinpath("index", "id", record["batch_id"][:2], record["batch_id"][2:4])
    paths = [by_seq / f"{digits[6:]}.json"] + ([by_id / f"{record['batch_id']}.json"] * counted)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(canonical_json(record))


def test_the_old_layout_folds_into_what_the_new_one_writes(tmp_path: Path) -> None:
    raw_dir, validated_dir = tmp_path / "raw", tmp_path / "validated"
    for n in range(1, 41):
        _legacy(raw_dir, _record(n))
    _legacy(raw_dir, _record(41), counted=False)  # a crash's leftover: never ingested
    validated = [{**_record(n), "files": {}, "summary": {}} for n in range(1, 41)]
    for record in validated:
        _legacy(validated_dir, record)
    stone = {**_record(3), "lineage_commit": "c", "lineage_date": "d", "keep_raw_days": 7.0}
    dropped = raw_dir.joinpath("index", "dropped", stone["batch_id"][:2], stone["batch_id"][2:4])
    dropped.mkdir(parents=True)
    (dropped / f"{stone['batch_id']}.json").write_bytes(canonical_json(stone))

    folded = fold_indexes(raw_dir, validated_dir)

    assert (folded.raw, folded.validated, folded.tombstones) == (40, 40, 1)
    assert [r.sequence for r in records(raw_dir)] == list(range(1, 41))
    assert record_of(raw_dir, _record(41)["batch_id"]) is None
    assert last_validated(validated_dir) == 40
    found = validated_record_of(validated_dir, _record(5)["batch_id"])
    assert found is not None
    assert found.sequence == 5
    assert tombstone_of(raw_dir, stone["batch_id"]) is not None
    assert legacy_records(raw_index(raw_dir).folder, (SEQ, ID, "dropped")) == []
    assert legacy_records(validated_index(validated_dir).folder) == []
    fresh = RecordIndex(tmp_path / "fresh", raw_index(raw_dir).per_segment)
    fresh.put([_record(n) for n in range(1, 41)])
    folded_raw = _tree(raw_index(raw_dir).folder)
    assert {k: v for k, v in folded_raw.items() if not k.startswith("dropped")} == _tree(
        fresh.folder
    )
    assert not fold_indexes(raw_dir, validated_dir).any  # again: nothing left to fold


def test_a_line_without_a_batch_and_a_sequence_is_named_not_a_traceback(tmp_path: Path) -> None:
    index = RecordIndex(tmp_path, 8)
    index.put([_record(1)])
    index.segment_path(1).write_text('{"batch_id":"x"}\n')
    with pytest.raises(StorageError, match="line 1 is no index record"):
        index.at(1)


def test_a_damaged_old_record_stops_the_fold_before_anything_is_removed(tmp_path: Path) -> None:
    raw_dir, validated_dir = tmp_path / "raw", tmp_path / "validated"
    for n in (1, 2):
        _legacy(raw_dir, _record(n))
        _legacy(validated_dir, {**_record(n), "files": {}})
    damaged = legacy_records(validated_dir / "index", (SEQ,))[1]
    damaged.write_text("{")
    before = legacy_records(raw_dir / "index") + legacy_records(validated_dir / "index")
    with pytest.raises(StorageError, match="is no index record; nothing was changed"):
        fold_indexes(raw_dir, validated_dir)
    assert legacy_records(raw_dir / "index") + legacy_records(validated_dir / "index") == before
    assert raw_index(raw_dir).files() == []
