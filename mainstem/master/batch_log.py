"""The master's record of the batches applied to it: a summary, and a log split into segments.

In: the batches a merge applies, in order, and the summary the master held before. Out: the new
summary (how many batches, accepted and rejected, rows the contract refused, the last batch), which
the manifest carries and the metrics are read from, and the log: `_batches-<n>.jsonl` files of
SEGMENT_SIZE records each, one JSON line per batch in the order applied. A merge rewrites only the
last, unfinished segment and hard-links the full ones, so neither the manifest nor what a batch
makes DVC store grows with the number of batches applied; the full record stays in the master.
A segment's bytes depend only on its batches, so appending batches one at a time and writing them
all at once give the same files. The `_` prefix keeps Parquet readers out of the log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mainstem import crashpoints

SEGMENT_SIZE = 256
_PREFIX = "_batches-"
_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class AppliedBatch:
    batch_id: str
    sequence: int
    status: str
    accepted_sha256: str
    rows_accepted: int
    rows_rejected: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "sequence": self.sequence,
            "status": self.status,
            "accepted_sha256": self.accepted_sha256,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
        }


@dataclass(frozen=True)
class BatchSummary:
    """What the log holds, in a few numbers: kept up to date by each merge, never recounted."""

    count: int = 0
    accepted: int = 0
    rejected: int = 0
    rows_rejected: int = 0
    last: AppliedBatch | None = None

    def after(self, batches: Iterable[AppliedBatch]) -> BatchSummary:
        """The summary once `batches` are applied on top, in order."""
        summary = self
        for batch in batches:
            summary = replace(
                summary,
                count=summary.count + 1,
                accepted=summary.accepted + (batch.status == "accepted"),
                rejected=summary.rejected + (batch.status == "rejected"),
                rows_rejected=summary.rows_rejected + batch.rows_rejected,
                last=batch,
            )
        return summary

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rows_rejected": self.rows_rejected,
            "last": self.last.to_json() if self.last else None,
            "segment_size": SEGMENT_SIZE,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchSummary:
        if int(raw["segment_size"]) != SEGMENT_SIZE:
            raise ValueError("the log was split into segments of another size")
        last = raw.get("last")
        return cls(
            count=int(raw["count"]),
            accepted=int(raw["accepted"]),
            rejected=int(raw["rejected"]),
            rows_rejected=int(raw["rows_rejected"]),
            last=AppliedBatch(**last) if last else None,
        )


def segment_name(index: int) -> str:
    return f"{_PREFIX}{index:06d}{_SUFFIX}"


def segment_names(count: int) -> list[str]:
    """The segments a log of `count` batches is made of."""
    return [segment_name(index) for index in range(-(-count // SEGMENT_SIZE))]


def is_log_file(name: str) -> bool:
    return name.startswith(_PREFIX) and name.endswith(_SUFFIX)


def segment_bytes(batches: Iterable[AppliedBatch]) -> bytes:
    """One line of canonical JSON per batch."""
    return b"".join(
        json.dumps(b.to_json(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for b in batches
    )


def read_segment(master_dir: Path, index: int) -> list[AppliedBatch]:
    path = master_dir / segment_name(index)
    with open(path, encoding="utf-8") as handle:
        return [AppliedBatch(**json.loads(line)) for line in handle if line.strip()]


def read_log(master_dir: Path, summary: BatchSummary) -> list[AppliedBatch]:
    """Every batch the master records, in the order applied (reads the whole log: for audits and
    tests, never for a merge)."""
    segments = range(len(segment_names(summary.count)))
    return [b for index in segments for b in read_segment(master_dir, index)][: summary.count]


@dataclass(frozen=True)
class LogUpdate:
    """The segments to write (name → bytes) and the full ones to carry over unchanged."""

    write: dict[str, bytes] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)


def log_update(
    before: BatchSummary, tail: list[AppliedBatch], added: list[AppliedBatch]
) -> LogUpdate:
    """How the log of `before` changes when `added` are applied; `tail` holds the batches of its
    last, unfinished segment (empty when every segment is full)."""
    if len(tail) != before.count % SEGMENT_SIZE:
        raise ValueError(
            f"the last log segment holds {len(tail)} batches; the summary says "
            f"{before.count % SEGMENT_SIZE}"
        )
    first = before.count // SEGMENT_SIZE  # the segment `added` starts in
    batches = [*tail, *added]
    write = {
        segment_name(first + n): segment_bytes(batches[start : start + SEGMENT_SIZE])
        for n, start in enumerate(range(0, len(batches), SEGMENT_SIZE))
    }
    return LogUpdate(write, [segment_name(index) for index in range(first)])


def stage_log(
    master_dir: Path, staged: Path, before: BatchSummary | None, added: list[AppliedBatch]
) -> list[str]:
    """Write the log after `added` into `staged` (new segments fsynced, full ones hard-linked
    from `master_dir`); every segment name. `before` is None when the master is rebuilt."""
    base = before or BatchSummary()
    tail = read_segment(master_dir, base.count // SEGMENT_SIZE) if base.count % SEGMENT_SIZE else []
    update = log_update(base, tail, added)
    for name in update.keep:
        os.link(master_dir / name, staged / name)
    for name, data in update.write.items():
        crashpoints.reach("master write log")
        with open(staged / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return [*update.keep, *update.write]


def read_summary(manifest: dict[str, Any]) -> BatchSummary | None:
    """The summary in a manifest read as plain JSON; None for a manifest without one."""
    try:
        return BatchSummary.from_json(manifest["batches"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def recent_batches(master_dir: Path, summary: BatchSummary, limit: int) -> list[AppliedBatch]:
    """The last `limit` batches of the log, oldest first: only its last segments are read."""
    wanted = min(limit, summary.count)
    found: list[AppliedBatch] = []
    index = (summary.count - 1) // SEGMENT_SIZE
    while len(found) < wanted and index >= 0:
        found = read_segment(master_dir, index) + found
        index -= 1
    return found[: summary.count][-wanted:] if wanted else []
