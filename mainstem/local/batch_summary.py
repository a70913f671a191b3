"""What happened to one batch, as lines for a person: `mainstem process`, the demo, the worker.

In: a batch run (its claim, validation report and master rows). Out: a few lines naming the
outcome, the figures and the most frequent reasons for rejected rows. Kept apart from the demo so
that `mainstem process` does not import the demo's Airflow launcher and MLflow to print them.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from mainstem.intake.dropfolder import Idle, Rejected

if TYPE_CHECKING:
    from mainstem.flow.batch import BatchRun


def top_reasons(report: dict[str, Any], limit: int = 4) -> list[str]:
    """The most frequent rejection causes of a batch, as short lines.

    A rejected image is counted under its own reason (truncated, wrong format, too small...),
    not as a bare "image" check, so the summary says what to fix.
    """
    if report["reasons"]:
        return [str(reason) for reason in report["reasons"]][:limit]
    counts: Counter[str] = Counter()
    images = [i for i in report.get("images") or [] if i["status"] == "rejected" and i["reason"]]
    explained = {image["column"] for image in images}
    for failure in report["failures_by_check"]:
        if failure["check"] == "image" and failure["column"] in explained:
            continue
        counts[f"{failure['column'] or 'row'}: {failure['check']}"] += int(failure["rows"])
    for image in images:
        counts[f"{image['column']}: {image['reason']}"] += int(image["rows"])
    return [
        f"{reason} ({count} row{'s' if count != 1 else ''})"
        for reason, count in counts.most_common(limit)
    ]


def describe(label: str, run: BatchRun) -> list[str]:
    """What happened to one delivered batch, for a person to read."""
    claim = run.claim
    if isinstance(claim, Idle):
        return [f"{label}: not processed ({claim.reason})"]
    if isinstance(claim, Rejected):
        lines = [f"{label} ({claim.batch_id}): REJECTED at the drop folder"]
        return lines + [f"    - {reason}" for reason in claim.reasons]
    if claim.duplicate_of is not None:
        rejected = (run.report or {}).get("status") == "rejected"
        return describe_duplicate(label, claim.duplicate_of, run.master_rows, rejected)
    return describe_report(label, claim.batch_id, run.report or {}, run.master_rows)


def describe_duplicate(
    label: str, first: dict[str, object], master_rows: int | None, rejected: bool = False
) -> list[str]:
    """A re-delivery of content ingested before: nothing applied, and where the first one is."""
    name = f" as {first['name']!r}" if first.get("name") else ""
    sequence = f", #{first['sequence']}" if first.get("sequence") is not None else ""
    outcome = (
        "the contract rejected it, so this one is quarantined too"
        if rejected
        else "its rows are already in the master"
    )
    return [
        f"{label} ({first['batch_id']}): DUPLICATE, nothing applied",
        f"  the same content was delivered before{name} (batch {first['batch_id']}{sequence});",
        f"  {outcome}",
        f"  master: {master_rows} rows",
    ]


def describe_report(
    label: str, batch_id: str, report: dict[str, Any], master_rows: int | None
) -> list[str]:
    """A batch's figures from its validation report, and the master's size after it."""
    status = "REJECTED by the contract" if report["status"] == "rejected" else "accepted"
    lines = [
        f"{label} ({batch_id}): {status}",
        f"  rows:   {report['rows_in']} in, {report['rows_accepted']} accepted, "
        f"{report['rows_rejected']} rejected",
    ]
    lines += [f"    - {reason}" for reason in top_reasons(report)]
    lines.append(
        f"  images: {report['images_accepted']} accepted, {report['images_rejected']} rejected"
    )
    lines += describe_drift(report.get("drift"))
    lines.append(f"  master: {master_rows} rows")
    return lines


def describe_drift(drift: dict[str, Any] | None) -> list[str]:
    """A line naming the columns that drifted from production's training data, if any did."""
    if not drift or not drift.get("drifted"):
        return []
    reference = drift.get("reference") or {}
    return [
        f"  drift:  {', '.join(drift['drifted'])} drifted from the data "
        f"{reference.get('model_name')} version {reference.get('version')} was trained on"
    ]
