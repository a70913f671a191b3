"""The validated store's layout: one result folder for the newest batch, every batch's files in
the DVC cache, found through a flat index; a rebuild equals an incremental run."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mainstem.errors import ValidatedBatchMissingError
from mainstem.intake.raw_store import cached_pack
from mainstem.validation.image_pack import image_pack_bytes, read_pack_images
from mainstem.validation.image_store import StoredImages
from mainstem.validation.layout import (
    ACCEPTED,
    BATCH,
    IMAGE_PACK,
    INDEX,
    REPORT,
    RESULT_FILES,
    last_validated,
    read_report,
    record_of,
    result_file,
)
from mainstem.validation.metrics import validation_metrics
from tests.unit.raw_batches import csv_bytes, png, row, v1, validate_all, write_raw_batch


def _batches(tmp_path: Path, count: int) -> list:
    """`count` raw batches, each with rows of its own and two photos of its own colour."""
    return [
        write_raw_batch(
            tmp_path / "raw" / f"b{n}",
            {
                "t.csv": csv_bytes([row(10 * n + i, image_file=f"p{i}.png") for i in range(2)]),
                "p0.png": png((24, 24), (10 * n, 90, 40)),
                "p1.png": png((24, 24), (10 * n, 40, 90)),
            },
            batch_id=f"b{n}",
            sequence=n,
        )
        for n in range(1, count + 1)
    ]


def _files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_an_image_pack_is_byte_stable_and_gives_its_images_back(tmp_path: Path) -> None:
    images = {"ab/abc.png": b"one", "0f/0ff.png": b"two"}
    data = image_pack_bytes(images)
    assert data == image_pack_bytes(dict(reversed(list(images.items()))))
    with tarfile.open(fileobj=io.BytesIO(data)) as pack:
        assert [(m.name, m.mtime, m.uid) for m in pack] == [
            ("images/0f/0ff.png", 0, 0),
            ("images/ab/abc.png", 0, 0),
        ]
    (tmp_path / "p.tar").write_bytes(data)
    assert read_pack_images(tmp_path / "p.tar", ["ab/abc.png", "zz/missing.png"]) == {
        "ab/abc.png": b"one"
    }


def test_the_output_holds_only_the_newest_batch_and_the_cache_holds_every_one(
    tmp_path: Path,
) -> None:
    validated = tmp_path / "validated"
    validate_all(_batches(tmp_path, 3), validated, v1())
    assert sorted(p.name for p in validated.iterdir()) == [BATCH, INDEX]
    assert sorted(p.name for p in (validated / BATCH).iterdir()) == sorted(RESULT_FILES)
    assert (read_report(validated, "b3") or {})["batch_id"] == "b3"  # the output's own
    assert last_validated(validated) == 3
    for batch_id in ("b1", "b2", "b3"):
        record = record_of(validated, batch_id)
        assert record is not None
        assert len(record.images) == 2
        for name in RESULT_FILES:
            assert cached_pack(tmp_path, record.files[name]).is_file()
    assert (read_report(validated, "b1") or {})["batch_id"] == "b1"  # from the cache


def test_a_batch_adds_its_own_files_and_two_index_lines_whatever_came_before(
    tmp_path: Path,
) -> None:
    from mainstem.intake.record_index import shard_name

    validated = tmp_path / "validated"
    batches = _batches(tmp_path, 4)
    validate_all(batches[:3], validated, v1())
    index_before = _files_under(validated / INDEX)
    validate_all(batches, validated, v1())
    index_after = _files_under(validated / INDEX)
    changed = sorted(k for k in index_after if index_before.get(k) != index_after[k])
    assert changed == sorted([f"id/{shard_name('b4')}", "seq/00000000.jsonl"])
    for name in changed:  # one line more, every earlier line as it was
        before = index_before.get(name, b"").splitlines()
        after = index_after[name].splitlines()
        assert len(after) == len(before) + 1
        assert next(row for row in after if row not in before).count(b'"b4"') == 1


def test_an_incremental_run_and_a_rebuild_leave_the_same_store_and_metrics(
    tmp_path: Path,
) -> None:
    one_by_one, at_once = tmp_path / "a" / "validated", tmp_path / "b" / "validated"
    batches = _batches(tmp_path, 3)
    for count in range(1, 4):
        validate_all(batches[:count], one_by_one, v1())
    validate_all(batches, at_once, v1())
    assert _files_under(one_by_one) == _files_under(at_once)
    metrics = []
    for validated in (one_by_one, at_once):
        record = record_of(validated, "b3")
        assert record is not None
        metrics.append(
            validation_metrics("produce/v1", record.totals, read_report(validated, "b3"))
        )
    assert metrics[0] == metrics[1]
    reports = [read_report(one_by_one, f"b{n}") or {} for n in (1, 2, 3)]
    assert metrics[0]["batches_validated"] == 3
    assert metrics[0]["rows_accepted_total"] == sum(int(r["rows_accepted"]) for r in reports)


def test_a_new_fingerprint_validates_every_batch_again_into_the_cache(tmp_path: Path) -> None:
    from mainstem.validation.store import ValidatedStore, refresh

    validated = tmp_path / "validated"
    batches = _batches(tmp_path, 2)
    validate_all(batches, validated, v1())
    refresh(batches, ValidatedStore.at(validated, "other code"), v1(), workers=1)
    for batch_id in ("b1", "b2"):
        record = record_of(validated, batch_id)
        assert record is not None
        assert record.fingerprint == "other code"


def test_a_past_batchs_images_are_read_from_its_pack(tmp_path: Path) -> None:
    validated = tmp_path / "validated"
    validate_all(_batches(tmp_path, 3), validated, v1())
    first = record_of(validated, "b1")
    assert first is not None
    found = StoredImages(validated, tmp_path).read_many([*first.images, "zz/none.png"])
    assert sorted(found) == sorted(first.images)
    pack = result_file(validated, first, IMAGE_PACK)
    assert found == read_pack_images(pack, first.images)


def test_a_past_batch_missing_from_the_cache_names_the_fix(tmp_path: Path) -> None:
    validated = tmp_path / "validated"
    validate_all(_batches(tmp_path, 2), validated, v1())
    first = record_of(validated, "b1")
    assert first is not None
    cached_pack(tmp_path, first.files[ACCEPTED]).unlink()
    with pytest.raises(ValidatedBatchMissingError, match="mainstem upgrade --fetch-raw"):
        result_file(validated, first, ACCEPTED)
    assert result_file(validated, first, REPORT).is_file()


def test_an_old_layout_is_cleared_and_the_new_one_kept(tmp_path: Path) -> None:
    from mainstem.flow.validated_upgrade import clear_legacy_validated, legacy_entries

    validated = tmp_path / "data" / "validated"
    for old in ("0123abcd/report.json", "images/ab/abc.png", "_state.json"):
        (validated / old).parent.mkdir(parents=True, exist_ok=True)
        (validated / old).write_bytes(b"old")
    for new in ("batch/report.json", "index/state.json", ".gitignore"):
        (validated / new).parent.mkdir(parents=True, exist_ok=True)
        (validated / new).write_bytes(b"new")
    assert [p.name for p in legacy_entries(validated)] == ["0123abcd", "_state.json", "images"]
    assert clear_legacy_validated(validated) == 1
    assert sorted(p.name for p in validated.iterdir()) == [".gitignore", "batch", "index"]
    assert clear_legacy_validated(validated) == 0


def test_a_batch_whose_sequence_record_is_missing_is_validated_again(tmp_path: Path) -> None:
    from mainstem.intake.record_index import read_lines, write_lines
    from mainstem.validation.layout import validated_index

    validated = tmp_path / "validated"
    batches = _batches(tmp_path, 2)
    validate_all(batches, validated, v1())
    before = _files_under(validated)
    segment = validated_index(validated).segment_path(2)
    kept = [row for row in read_lines(segment) if row["sequence"] != 2]
    write_lines(segment, kept)  # a crash between the id line and the segment's
    validate_all(batches, validated, v1())
    assert _files_under(validated) == before
    assert last_validated(validated) == 2
