"""The drop folder as a queue: claim order, one entry at a time, and what each claim touches."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from mainstem.errors import MainstemError
from mainstem.intake import lock
from mainstem.intake.delivery import MANIFEST, PROCESSING, READY
from mainstem.intake.dropfolder import Claimed, Idle, Rejected, claim_batch, release_batch
from mainstem.intake.ingest import ingest_claimed
from mainstem.intake.queue import QueueEntry, oldest_first, queue_summary, ready_entries
from mainstem.intake.submit import submit, submit_to_queue
from mainstem.params import IngestParams
from tests.conftest import ingest_params


@pytest.fixture
def params(tmp_path: Path) -> IngestParams:
    return ingest_params(tmp_path)


def _batch(folder: Path, tag: str) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "table.csv").write_text(f"item_id,image_file\n1,images/{tag}.png\n")
    (folder / "images" / f"{tag}.png").write_bytes(f"image bytes of {tag}".encode() * 50)
    return folder


def _queue(params: IngestParams, tmp_path: Path, name: str, ready_at: float, tag: str) -> Path:
    """Submit a batch as queue entry `name` whose `_READY` carries the mtime `ready_at`."""
    entry, _manifest = submit_to_queue(
        [_batch(tmp_path / f"src-{name}", tag)], params.incoming_dir, name
    )
    ready = params.incoming_dir / entry / READY
    os.utime(ready, (ready_at, ready_at))
    return params.incoming_dir / entry


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([QueueEntry(3.0, "a"), QueueEntry(1.0, "b"), QueueEntry(2.0, "c")], ["b", "c", "a"]),
        ([QueueEntry(1.0, "b"), QueueEntry(1.0, "a"), QueueEntry(1.0, "")], ["", "a", "b"]),
        ([], []),
    ],
)
def test_entries_are_taken_oldest_ready_first_ties_by_name(
    entries: list[QueueEntry], expected: list[str]
) -> None:
    assert [e.name for e in oldest_first(entries)] == expected


def test_ready_entries_ignore_folders_still_being_written(
    params: IngestParams, tmp_path: Path
) -> None:
    _queue(params, tmp_path, "late", 2000.0, "a")
    _queue(params, tmp_path, "early", 1000.0, "b")
    (params.incoming_dir / "writing").mkdir()
    (params.incoming_dir / "writing" / "table.csv").write_text("item_id\n1\n")
    (params.incoming_dir / ".submit-x-host-1").mkdir()

    assert [e.name for e in ready_entries(params.incoming_dir)] == ["early", "late"]


def test_queue_summary_counts_the_waiting_and_ages_the_oldest() -> None:
    summary = queue_summary([QueueEntry(100.0, "b"), QueueEntry(40.0, "a")], now=160.0)

    assert summary == {"waiting": 2, "oldest_age_seconds": 120.0, "names": ["a", "b"]}


def test_the_claim_takes_the_oldest_ready_entry(params: IngestParams, tmp_path: Path) -> None:
    _queue(params, tmp_path, "second", 2000.0, "a")
    first = _queue(params, tmp_path, "first", 1000.0, "b")

    result = claim_batch(params, "run-1", 3000.0)

    assert isinstance(result, Claimed)
    assert result.name == "first"
    assert lock.read_owner(params.incoming_dir).entry == "first"  # type: ignore[union-attr]
    assert not (first / READY).exists()
    assert (params.incoming_dir / "second" / READY).exists()


def test_a_second_claim_waits_for_the_lock_however_many_batches_wait(
    params: IngestParams, tmp_path: Path
) -> None:
    _queue(params, tmp_path, "one", 1000.0, "a")
    _queue(params, tmp_path, "two", 2000.0, "b")
    assert isinstance(claim_batch(params, "run-1", 3000.0), Claimed)

    result = claim_batch(params, "run-2", 3001.0)

    assert isinstance(result, Idle)
    assert result.locked
    assert (params.incoming_dir / "two" / READY).exists()


def test_an_entry_whose_files_are_still_arriving_is_passed_over(
    params: IngestParams, tmp_path: Path
) -> None:
    slow = _queue(params, tmp_path, "slow", 1000.0, "a")
    (slow / "images" / "a.png").write_bytes(b"half")
    _queue(params, tmp_path, "quick", 1100.0, "b")

    result = claim_batch(params, "run-1", 1200.0)  # before the slow one's manifest deadline

    assert isinstance(result, Claimed)
    assert result.name == "quick"
    assert (slow / READY).exists()


def test_ingest_and_release_act_on_the_claimed_entry_alone(
    params: IngestParams, tmp_path: Path
) -> None:
    _queue(params, tmp_path, "one", 1000.0, "a")
    _queue(params, tmp_path, "two", 2000.0, "b")
    claimed = claim_batch(params, "run-1", 3000.0)
    assert isinstance(claimed, Claimed)

    record = ingest_claimed(params)
    leftovers = release_batch(params, None)

    assert record is not None
    assert record.batch_id == claimed.batch_id
    assert leftovers == []
    assert not (params.incoming_dir / "one").exists()
    assert (params.incoming_dir / "two" / READY).exists()
    assert not (params.incoming_dir / PROCESSING).exists()
    assert isinstance(claim_batch(params, "run-2", 3001.0), Claimed)


def test_a_release_finishing_one_a_killed_run_began_leaves_no_empty_folder(
    params: IngestParams, tmp_path: Path
) -> None:
    entry = _queue(params, tmp_path, "one", 1000.0, "a")
    assert isinstance(claim_batch(params, "run-1", 3000.0), Claimed)
    ingest_claimed(params)
    for path in (entry / "table.csv", entry / "images" / "a.png"):
        path.unlink()  # the killed run removed the files, not yet the manifest

    release_batch(params, None)

    assert not entry.exists()


def test_a_bad_entry_is_quarantined_and_the_next_one_is_claimed_after_it(
    params: IngestParams, tmp_path: Path
) -> None:
    bad = _queue(params, tmp_path, "bad", 1000.0, "a")
    os.symlink("/etc/passwd", bad / "images" / "link.png")
    _queue(params, tmp_path, "good", 2000.0, "b")

    rejected = claim_batch(params, "run-1", 3000.0)
    after = claim_batch(params, "run-1", 3001.0)

    assert isinstance(rejected, Rejected)
    assert (rejected.quarantine / "report.json").exists()
    assert (rejected.quarantine / "files" / "images" / "link.png").is_symlink()
    assert not bad.exists()
    assert isinstance(after, Claimed)
    assert after.name == "good"


def test_the_same_content_in_two_entries_is_a_duplicate_the_second_time(
    params: IngestParams, tmp_path: Path
) -> None:
    _queue(params, tmp_path, "original", 1000.0, "same")
    _queue(params, tmp_path, "resent", 2000.0, "same")
    first = claim_batch(params, "run-1", 3000.0)
    ingest_claimed(params)
    release_batch(params, None)

    second = claim_batch(params, "run-1", 3001.0)

    assert isinstance(first, Claimed)
    assert isinstance(second, Claimed)
    assert not first.duplicate
    assert second.duplicate
    assert second.batch_id == first.batch_id


def test_a_stale_claim_of_an_entry_is_taken_over_and_resumed(
    params: IngestParams, tmp_path: Path
) -> None:
    entry = _queue(params, tmp_path, "one", 1000.0, "a")
    owner = lock.owner_for("dead-run", 1000.0, None, False, "one")
    dead = replace(owner, pid=999_999_999, given_up=True)
    lock.lock_path(params.incoming_dir).write_text(json.dumps(asdict(dead)), encoding="utf-8")

    result = claim_batch(params, "run-2", 3000.0)

    assert isinstance(result, Claimed)
    assert result.recovered_from is not None
    assert not (entry / READY).exists()
    assert lock.read_owner(params.incoming_dir).entry == "one"  # type: ignore[union-attr]


def test_a_batch_in_the_drop_folder_root_leaves_the_queue_entries_out(
    params: IngestParams, tmp_path: Path
) -> None:
    _queue(params, tmp_path, "queued", 500.0, "q")
    submit([_batch(tmp_path / "root-batch", "r")], params.incoming_dir, None)
    os.utime(params.incoming_dir / READY, (100.0, 100.0))

    result = claim_batch(params, "run-1", 3000.0)
    ingest_claimed(params)
    release_batch(params, None)

    assert isinstance(result, Claimed)
    assert result.name is None
    assert sorted(p.name for p in params.incoming_dir.iterdir() if not p.name.startswith(".")) == [
        "queued"
    ]
    assert (params.incoming_dir / "queued" / READY).exists()
    assert (params.incoming_dir / "queued" / MANIFEST).exists()


def test_two_producers_of_one_name_each_get_a_folder(params: IngestParams, tmp_path: Path) -> None:
    first, _ = submit_to_queue([_batch(tmp_path / "a", "a")], params.incoming_dir, "daily")
    second, _ = submit_to_queue([_batch(tmp_path / "b", "b")], params.incoming_dir, "daily")

    assert (first, second) == ("daily", "daily.2")
    assert [e.name for e in ready_entries(params.incoming_dir)] in (
        ["daily", "daily.2"],
        ["daily.2", "daily"],
    )


@pytest.mark.parametrize("name", ["../up", "_READY", ".hidden", "a/b", ""])
def test_a_name_that_cannot_be_a_folder_is_refused(
    params: IngestParams, tmp_path: Path, name: str
) -> None:
    with pytest.raises(MainstemError, match="cannot name a batch's folder"):
        submit_to_queue([_batch(tmp_path / "a", "a")], params.incoming_dir, name)
    assert not params.incoming_dir.exists() or not any(params.incoming_dir.iterdir())
