"""The drop folder as a queue of batches: one sub-folder per batch, claimed oldest `_READY` first.

In: the drop folder (`ingest.incoming_dir`). Out: its entries, the order they are claimed in, and
a summary for `mainstem status` and `submit`. Each entry is a folder `incoming/<name>/` holding
its files, an optional `_MANIFEST.json` and, once complete, `_READY`; a batch written directly
into `incoming/` (the one-batch layout) is the root entry, named "", and takes its turn like the
others. A top-level folder that holds `_READY` or `_MANIFEST.json` is an entry, never part of
the root batch. The order is by `_READY`'s mtime, ties by name, so it is the same on every look.

These few functions are all the claim needs from a queue (list the ready entries oldest first,
the folder of one entry, the entries apart from the root batch); a drop zone on object storage
can stand behind the same ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mainstem.intake.delivery import (
    CLAIM_TMP_PREFIX,
    READY,
    SUBMIT_TMP_PREFIX,
    entry_dir,
    holds_batch,
)

ROOT_ENTRY = ""


@dataclass(frozen=True, order=True)
class QueueEntry:
    """A batch whose producer has written `_READY`; ordered as the claim takes them."""

    ready_at: float  # the mtime of its `_READY`
    name: str  # its sub-folder, "" for a batch directly in the drop folder

    def describe(self) -> str:
        return self.name or "(drop folder root)"


def oldest_first(entries: list[QueueEntry]) -> list[QueueEntry]:
    """The entries in claim order: oldest `_READY` first, ties by name."""
    return sorted(entries, key=lambda e: (e.ready_at, e.name))


def _ready_at(folder: Path) -> float | None:
    try:
        return (folder / READY).stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return None


def _sub_folders(incoming: Path) -> list[str]:
    """The top-level folders of the drop folder, leaving out claimants' and producers' scratch."""
    try:
        with os.scandir(incoming) as found:
            return sorted(
                e.name
                for e in found
                if e.is_dir(follow_symlinks=False)
                and not e.name.startswith((CLAIM_TMP_PREFIX, SUBMIT_TMP_PREFIX))
            )
    except FileNotFoundError:
        return []


def queue_folders(incoming: Path) -> frozenset[str]:
    """The top-level folders that are queue entries of their own, so not part of a root batch."""
    return frozenset(name for name in _sub_folders(incoming) if holds_batch(incoming / name))


def ready_entries(incoming: Path) -> list[QueueEntry]:
    """Every entry with a `_READY`, in the order the claim takes them."""
    entries = []
    for name in [ROOT_ENTRY, *_sub_folders(incoming)]:
        ready_at = _ready_at(entry_dir(incoming, name))
        if ready_at is not None:
            entries.append(QueueEntry(ready_at, name))
    return oldest_first(entries)


def queue_summary(entries: list[QueueEntry], now: float, shown: int = 10) -> dict[str, object]:
    """How many batches wait, the oldest one's age in seconds, and the first `shown` names."""
    ordered = oldest_first(entries)
    return {
        "waiting": len(ordered),
        "oldest_age_seconds": round(max(0.0, now - ordered[0].ready_at), 1) if ordered else None,
        "names": [e.describe() for e in ordered[:shown]],
    }


def describe_queue(summary: dict[str, object]) -> str:
    """The queue in one line, for `mainstem submit` and `status`."""
    waiting = int(str(summary["waiting"]))
    if not waiting:
        return "queue: no batch waits"
    names = [str(n) for n in summary["names"]] if isinstance(summary["names"], list) else []
    listed = ", ".join(names)
    more = f" and {waiting - len(names)} more" if waiting > len(names) else ""
    return (
        f"queue: {waiting} batch(es) wait, the oldest for {summary['oldest_age_seconds']} s: "
        f"{listed}{more}"
    )
