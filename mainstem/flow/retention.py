"""Which raw packs retention may drop, and what the `gc:` commit says: pure decisions, no I/O.

In: every ingested batch's index record in sequence order, with the lineage commit (and its
time, from git) that recorded it; the clock; the age to keep; the batches that must stay (already
dropped, claimed, not merged yet). Out: the batches whose packs go, and the message of the commit
that records it.

A pack is pinned by its batch's lineage commit and by every commit after it until the next batch
is ingested (a duplicate delivery or a pipeline commit keeps the pack in place). So a pack counts
as old only when the lineage commit of the batch after it is older than the age to keep: every
commit that pins the pack is then older too. The newest batch has no successor and never goes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mainstem.errors import RetentionError
from mainstem.intake.raw_store import RawRecord

DAY_SECONDS = 86_400
_LISTED = 50


@dataclass(frozen=True)
class PackAge:
    """An ingested batch and the lineage commit that recorded it (None while uncommitted)."""

    record: RawRecord
    commit: str | None
    committed_at: int | None  # the commit's time, seconds since the epoch, as git records it


@dataclass(frozen=True)
class Drop:
    """A pack retention drops: its batch, the commit that recorded it, and when the next came."""

    age: PackAge
    superseded_at: int

    @property
    def record(self) -> RawRecord:
        return self.age.record


def keep_seconds(days: float) -> float:
    """`--keep-raw DAYS` in seconds; a negative or non-finite age is refused."""
    if not days >= 0 or days == float("inf"):
        raise RetentionError(f"--keep-raw takes a number of days, 0 or more (got {days})")
    return days * DAY_SECONDS


def select_drops(
    ages: list[PackAge], now: float, keep_days: float, keep: Iterable[str] = ()
) -> list[Drop]:
    """The packs to drop, in sequence order: those whose successor's lineage commit is older than
    `keep_days` at `now`, except the newest batch, any batch in `keep` (ids) and any batch that
    follows one not committed yet."""
    cutoff = now - keep_seconds(keep_days)
    kept = set(keep)
    ordered = sorted(ages, key=lambda a: a.record.sequence)
    drops = []
    for age, successor in itertools.pairwise(ordered):
        if age.commit is None or successor.committed_at is None:
            break  # a batch not recorded yet: it and everything after it are in use
        if age.record.batch_id in kept:
            continue
        if successor.committed_at <= cutoff:
            drops.append(Drop(age, successor.committed_at))
    return drops


def _when(stamp: int | None) -> str:
    return "?" if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()


def lineage_date(age: PackAge) -> str:
    """The lineage commit's time as an ISO date (UTC)."""
    return _when(age.committed_at)


def gc_message(drops: list[Drop], keep_days: float) -> str:
    """The `gc:` commit's message: what was dropped, how many bytes, and what stays."""
    size = sum(d.record.size for d in drops)
    lines = [
        f"gc: dropped the raw packs of {len(drops)} batch(es) older than {keep_days:g} days "
        f"({size} bytes)",
        "",
        "Each pack left the DVC cache and every DVC remote after this commit; its tombstone in "
        "data/raw/index/dropped/ says so. The master's versions, the validated results and every "
        "commit stay: a commit whose raw pack is gone reads as dropped by retention.",
        "",
    ]
    for drop in drops[:_LISTED]:
        r = drop.record
        name = f" ({r.name})" if r.name else ""
        lines.append(
            f"#{r.sequence} {r.batch_id}{name}: {r.size} bytes, md5 {r.md5}, lineage "
            f"{(drop.age.commit or '?')[:12]} of {lineage_date(drop.age)}"
        )
    if len(drops) > _LISTED:
        lines.append(f"... and {len(drops) - _LISTED} more (their tombstones are in this commit)")
    return "\n".join(lines) + "\n"
