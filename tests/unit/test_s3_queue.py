"""`mainstem status` for an S3 drop zone: waiting, leased and arriving batches of a listing."""

from __future__ import annotations

from mainstem.intake.s3_layout import Entry
from mainstem.intake.s3_queue import describe_zone, zone_queue


def _entry(name: str, ready_at: float | None, leased: bool = False) -> Entry:
    return Entry(name, ready_at, leased, ())


def test_the_zone_queue_lists_ready_batches_oldest_first_and_apart_from_leased_ones() -> None:
    entries = [
        _entry("b-late", 30.0),
        _entry("b-early", 10.0),
        _entry("b-held", 5.0, leased=True),
        _entry("b-coming", None),
    ]
    queue = zone_queue(entries, now=40.0)
    assert queue["waiting"] == 2
    assert queue["names"] == ["b-early", "b-late"]
    assert queue["oldest_age_seconds"] == 30.0
    assert queue["leased"] == ["b-held"]
    assert queue["arriving"] == ["b-coming"]


def test_the_zone_queue_reads_as_lines_naming_the_zone() -> None:
    status = {"url": "s3://b/zone", "error": None, **zone_queue([_entry("b1", 1.0)], 3.0)}
    lines = describe_zone(status)
    assert lines[0] == "drop zone: s3://b/zone"
    assert "1 batch(es) wait" in lines[1]
    assert "b1" in lines[1]


def test_an_unlistable_zone_is_one_line_with_its_error() -> None:
    lines = describe_zone({"url": "s3://b/zone", "error": "bucket b does not exist"})
    assert lines == ["drop zone: s3://b/zone: cannot list it: bucket b does not exist"]
