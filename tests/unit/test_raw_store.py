"""The raw store: one deterministic pack per batch, and an index whose records never grow."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from mainstem.errors import BatchChangedError, RawBatchMissingError
from mainstem.intake.delivery import DeliveredFile
from mainstem.intake.ingest import open_raw_batch
from mainstem.intake.raw_history import PastBatch, add_past_batches
from mainstem.intake.raw_store import (
    RawRecord,
    cached_pack,
    ensure_pack,
    find_pack,
    last_sequence,
    pack_meta,
    pack_path,
    record_of,
    records,
    write_pack,
    write_record,
)

FILES = {"table.csv": b"item_id,grade\n1,A\n", "img/b.png": b"\x89PNG b", "img/a.png": b"A" * 700}


def _deliver(incoming: Path, files: dict[str, bytes]) -> list[DeliveredFile]:
    listed = []
    for rel, data in files.items():
        (incoming / rel).parent.mkdir(parents=True, exist_ok=True)
        (incoming / rel).write_bytes(data)
        listed.append(DeliveredFile(rel, len(data), hashlib.sha256(data).hexdigest()))
    return listed


def _record(sequence: int, batch_id: str | None = None) -> RawRecord:
    return RawRecord(batch_id or f"{sequence:064x}", sequence, f"b{sequence}", "0" * 32, "1", 10)


def test_same_files_pack_to_the_same_bytes_whatever_their_order(tmp_path: Path) -> None:
    files = _deliver(tmp_path / "in", FILES)
    meta = {"batch_id": "abc", "sequence": 1, "name": "b1"}
    first = write_pack(tmp_path / "one" / "batch.tar", meta, tmp_path / "in", files)
    second = write_pack(tmp_path / "two" / "batch.tar", meta, tmp_path / "in", files[::-1])

    assert first == second
    one, two = (tmp_path / "one" / "batch.tar").read_bytes(), (tmp_path / "two" / "batch.tar")
    assert one == two.read_bytes()
    assert first[0] == hashlib.md5(one, usedforsecurity=False).hexdigest()
    with tarfile.open(tmp_path / "one" / "batch.tar") as pack:
        assert pack.getnames() == ["batch.json", "files/img/a.png", "files/img/b.png",
                                   "files/table.csv"]  # fmt: skip
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in pack.getmembers()} == {(0, 0, 0, 0o644)}


@pytest.mark.parametrize("changed", [b"A" * 699, b"A" * 701, b"B" * 700])
def test_a_file_changed_after_the_claim_fails_the_pack_and_keeps_the_old_one(
    tmp_path: Path, changed: bytes
) -> None:
    files = _deliver(tmp_path / "in", FILES)
    target = tmp_path / "raw" / "batch.tar"
    ensure_pack(tmp_path / "raw")
    before = target.read_bytes()
    (tmp_path / "in" / "img" / "a.png").write_bytes(changed)

    with pytest.raises(BatchChangedError, match=r"img/a.png changed after the batch was claimed"):
        write_pack(target, {"batch_id": "abc"}, tmp_path / "in", files)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["batch.tar"]


def test_the_index_lists_batches_in_sequence_and_finds_them_by_id(tmp_path: Path) -> None:
    for sequence in range(1, 206):
        write_record(tmp_path, _record(sequence))

    assert last_sequence(tmp_path) == 205
    assert [r.sequence for r in records(tmp_path, last=3)] == [203, 204, 205]
    assert [r.sequence for r in records(tmp_path)] == list(range(1, 206))
    assert record_of(tmp_path, f"{99:064x}") == _record(99)
    assert record_of(tmp_path, "f" * 64) is None
    assert record_of(tmp_path, "../x") is None


def test_an_empty_index_has_no_batches(tmp_path: Path) -> None:
    assert last_sequence(tmp_path) == 0
    assert records(tmp_path) == []


def test_a_past_batch_is_read_from_the_dvc_cache_by_its_md5(tmp_path: Path) -> None:
    root, raw_dir = tmp_path / "ws", tmp_path / "ws" / "data" / "raw"
    files = _deliver(tmp_path / "in", FILES)
    meta = {"batch_id": "old", "sequence": 1, "name": "b1"}
    md5, sha, size = write_pack(raw_dir / "batch.tar", meta, tmp_path / "in", files)
    cached = cached_pack(root, md5)
    cached.parent.mkdir(parents=True)
    pack_path(raw_dir).rename(cached)
    ensure_pack(raw_dir)  # the current pack is another batch's now
    record = RawRecord("old", 1, "b1", md5, sha, size)

    assert find_pack(raw_dir, root, record) == cached
    with open_raw_batch(raw_dir, root, record) as raw:
        assert (raw.batch_id, raw.sequence, raw.name) == ("old", 1, "b1")
        assert raw.file_path("img/a.png").read_bytes() == FILES["img/a.png"]
        scratch = raw.root
    assert not scratch.exists()
    cached.unlink()
    with pytest.raises(RawBatchMissingError, match=r"mainstem upgrade --fetch-raw"):
        find_pack(raw_dir, root, record)


def test_the_empty_pack_names_no_batch(tmp_path: Path) -> None:
    ensure_pack(tmp_path)
    assert pack_meta(tmp_path / "batch.tar") is None
    assert pack_meta(tmp_path / "missing.tar") is None


def test_a_synthetic_history_packs_as_ingest_does_and_continues_the_sequence(
    tmp_path: Path,
) -> None:
    root, raw_dir = tmp_path / "ws", tmp_path / "ws" / "data" / "raw"
    past = [PastBatch(f"b{n}", {**FILES, "table.csv": f"item_id\n{n}\n".encode()}) for n in (1, 2)]
    added = add_past_batches(root, raw_dir, past)
    more = add_past_batches(root, raw_dir, [PastBatch("b3", FILES)])

    assert [r.sequence for r in records(raw_dir)] == [1, 2, 3]
    expected_ids = [b.batch_id for b in [*past, PastBatch("b3", FILES)]]
    assert [r.batch_id for r in [*added, *more]] == expected_ids
    files = _deliver(tmp_path / "in", FILES)
    meta = {"batch_id": more[0].batch_id, "sequence": 3, "name": "b3"}
    md5, _sha, _size = write_pack(tmp_path / "batch.tar", meta, tmp_path / "in", files)
    assert md5 == more[0].md5
    assert cached_pack(root, md5).read_bytes() == (tmp_path / "batch.tar").read_bytes()
