"""The lines `mainstem process` prints for a batch: they must not contradict each other."""

from __future__ import annotations

from typing import Any

from mainstem.flow.batch import BatchRun
from mainstem.intake.dropfolder import Claimed
from mainstem.intake.lock import owner_for
from mainstem.local.batch_summary import describe, top_reasons

FIRST = {"batch_id": "ab12", "name": "b1", "sequence": 1}


def _report(status: str, **extra: Any) -> dict[str, Any]:
    base = {
        "batch_id": "ab12",
        "status": status,
        "reasons": [],
        "rows_in": 3,
        "rows_accepted": 3 if status == "accepted" else 0,
        "rows_rejected": 0 if status == "accepted" else 3,
        "images_accepted": 3,
        "images_rejected": 0,
        "failures_by_check": [],
        "images": [],
    }
    return {**base, **extra}


def _duplicate_run(report: dict[str, Any]) -> BatchRun:
    claim = Claimed("ab12", owner_for("run", 0.0, "ab12"), "b1-again", duplicate_of=FIRST)
    return BatchRun(claim, report, master_rows=3)


def test_a_duplicate_is_not_summarised_as_an_accepted_batch() -> None:
    lines = describe("b1-again", _duplicate_run(_report("accepted")))

    assert lines[0] == "b1-again (ab12): DUPLICATE, nothing applied"
    assert "delivered before as 'b1' (batch ab12, #1)" in lines[1]
    assert not any("accepted" in line for line in lines)


def test_a_duplicate_of_a_rejected_batch_says_it_is_quarantined_too() -> None:
    lines = describe("b1-again", _duplicate_run(_report("rejected")))

    assert "quarantined too" in "\n".join(lines)
    assert "already in the master" not in "\n".join(lines)


def test_each_bad_image_is_counted_under_its_own_reason() -> None:
    images = [
        {
            "column": "photo",
            "path": "a.png",
            "rows": 2,
            "status": "rejected",
            "reason": "truncated",
        },
        {
            "column": "photo",
            "path": "b.png",
            "rows": 1,
            "status": "rejected",
            "reason": "8x8 small",
        },
        {"column": "photo", "path": "c.png", "rows": 4, "status": "accepted", "reason": None},
    ]
    failures = [
        {"column": "photo", "check": "image", "rows": 3},
        {"column": "weight", "check": "in_range", "rows": 1},
    ]
    report = _report("accepted", images=images, failures_by_check=failures)

    assert top_reasons(report) == [
        "photo: truncated (2 rows)",
        "weight: in_range (1 row)",
        "photo: 8x8 small (1 row)",
    ]


def _run(report: dict[str, Any]) -> BatchRun:
    return BatchRun(Claimed("ab12", owner_for("run", 0.0, "ab12"), "b5"), report, master_rows=3)


def test_a_drifted_batch_names_its_drifted_columns() -> None:
    drift = {
        "status": "drifted",
        "reference": {"model_name": "produce-grade", "version": "2", "master_md5": "m.dir"},
        "drifted": ["supplier"],
    }
    lines = describe("b5", _run(_report("accepted", drift=drift)))
    assert (
        "  drift:  supplier drifted from the data produce-grade version 2 was trained on" in lines
    )


def test_a_batch_without_drift_prints_no_drift_line() -> None:
    stable = {"status": "stable", "reference": None, "drifted": []}
    assert not [
        line for line in describe("b5", _run(_report("accepted", drift=stable))) if "drift" in line
    ]
