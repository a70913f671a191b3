"""Which raw packs retention drops, what its commit says, how a reader of a dropped pack stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainstem.errors import RawBatchDroppedError, RetentionError
from mainstem.flow.retention import DAY_SECONDS, PackAge, gc_message, select_drops
from mainstem.intake.raw_store import RawRecord, cached_pack, find_pack, write_record
from mainstem.intake.raw_tombstones import Tombstone, tombstone_of, write_tombstones

NOW = 1_000 * DAY_SECONDS


def _age(sequence: int, days_ago: float | None) -> PackAge:
    record = RawRecord(f"b{sequence}", sequence, f"batch-{sequence}", f"m{sequence}", "s", 100)
    if days_ago is None:
        return PackAge(record, None, None)
    return PackAge(record, f"c{sequence}", int(NOW - days_ago * DAY_SECONDS))


def _dropped(ages: list[PackAge], keep_days: float, keep: tuple[str, ...] = ()) -> list[str]:
    return [d.record.batch_id for d in select_drops(ages, NOW, keep_days, keep)]


@pytest.mark.parametrize(
    ("days_ago", "keep_days", "expected"),
    [
        ([40, 30, 20, 10], 15, ["b1", "b2"]),  # b3's successor is only 10 days old
        ([40, 30, 20, 10], 5, ["b1", "b2", "b3"]),  # never the newest, however old
        ([40, 30, 20, 10], 50, []),
        ([40], 0, []),  # a single batch is the newest
        ([40, 30, 20], 20, ["b1", "b2"]),  # exactly DAYS old counts as old
        ([40, 30, None, None], 5, ["b1"]),  # b2's successor is not committed: it is in use
        ([], 1, []),
    ],
)
def test_a_pack_goes_once_its_successors_lineage_commit_is_older_than_days(
    days_ago: list[float | None], keep_days: float, expected: list[str]
) -> None:
    ages = [_age(n, d) for n, d in enumerate(days_ago, start=1)]
    assert _dropped(ages, keep_days) == expected


def test_batches_to_keep_stay_and_the_rest_still_go() -> None:
    ages = [_age(n, d) for n, d in enumerate([40, 30, 20, 10], start=1)]
    assert _dropped(ages, 5, keep=("b2",)) == ["b1", "b3"]


def test_the_order_of_the_input_does_not_matter() -> None:
    ages = [_age(n, d) for n, d in enumerate([40, 30, 20, 10], start=1)]
    assert _dropped(list(reversed(ages)), 15) == ["b1", "b2"]


def test_a_drop_remembers_when_its_pack_was_superseded() -> None:
    ages = [_age(1, 40), _age(2, 30)]
    (drop,) = select_drops(ages, NOW, 1)
    assert drop.superseded_at == ages[1].committed_at
    assert drop.age.commit == "c1"


@pytest.mark.parametrize("days", [-1, float("nan"), float("inf")])
def test_a_negative_or_endless_age_is_refused(days: float) -> None:
    with pytest.raises(RetentionError, match="--keep-raw takes a number of days"):
        select_drops([_age(1, 40), _age(2, 30)], NOW, days)


def test_the_gc_message_says_how_many_packs_and_bytes_went() -> None:
    ages = [_age(n, d) for n, d in enumerate([40, 30, 20], start=1)]
    message = gc_message(select_drops(ages, NOW, 1), 1)
    title, blank, *_body = message.splitlines()
    assert title == "gc: dropped the raw packs of 2 batch(es) older than 1 days (200 bytes)"
    assert blank == ""
    assert "#1 b1 (batch-1): 100 bytes, md5 m1, lineage c1 of " in message


def test_a_long_gc_message_lists_the_first_packs_and_counts_the_rest() -> None:
    ages = [_age(n, 200 - n) for n in range(1, 121)]
    message = gc_message(select_drops(ages, NOW, 1), 1)
    assert "#50 b50" in message
    assert "#51 b51" not in message
    assert "... and 69 more" in message


def _stored(tmp_path: Path) -> tuple[Path, RawRecord]:
    """A workspace whose raw index names one batch, its pack in the DVC cache."""
    raw_dir = tmp_path / "data" / "raw"
    record = RawRecord("ab12cd", 1, "batch-001", "0123456789abcdef", "s", 3)
    write_record(raw_dir, record)
    cached = cached_pack(tmp_path, record.md5)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tar")
    return raw_dir, record


def test_a_reader_of_a_dropped_pack_stops_with_one_line_even_if_a_copy_lingers(
    tmp_path: Path,
) -> None:
    raw_dir, record = _stored(tmp_path)
    assert find_pack(raw_dir, tmp_path, record) == cached_pack(tmp_path, record.md5)
    write_tombstones(raw_dir, [Tombstone("ab12cd", 1, "batch-001", record.md5, 3, "c1", "d", 7)])

    with pytest.raises(RawBatchDroppedError) as raised:
        find_pack(raw_dir, tmp_path, record)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("raw batch ab12cd (batch-001), sequence 1, was dropped by retention")
    assert "contract check --batches K" in message


def test_a_tombstone_reads_back_as_written_and_a_damaged_one_as_none(tmp_path: Path) -> None:
    stone = Tombstone("ab12cd", 1, None, "0123", 3, "c1", "2026-01-01T00:00:00+00:00", 7.5)
    [path] = write_tombstones(tmp_path, [stone])
    assert tombstone_of(tmp_path, "ab12cd") == stone
    path.write_text('{"batch_id":"ab12cd"}\n')
    assert tombstone_of(tmp_path, "ab12cd") is None
    assert tombstone_of(tmp_path, "../x") is None
