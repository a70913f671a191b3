"""Lineage commits: one git commit per processed batch in the pipeline workspace.

In: the workspace, what happened to the batch (its report and the master metrics). Out: a commit
carrying `dvc.lock`, the metrics files and the claim record, whose message names the batch and its
row counts, so `git log` reads as the history of the master. Recording twice is a no-op, so a
retried task never makes a second commit for the same batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem import crashpoints
from mainstem.commands import git

log = logging.getLogger(__name__)
AUTHOR = ["-c", "user.name=mainstem pipeline", "-c", "user.email=pipeline@mainstem.invalid"]
_STALE_INDEX_LOCK_SECONDS = 5.0


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    name: str | None
    status: str
    rows_in: int
    rows_accepted: int
    rows_rejected: int
    master_rows: int
    contract: str
    duplicate: bool = False

    def message(self) -> str:
        title = f"batch {self.batch_id}"
        if self.name:
            title += f" ({self.name})"
        if self.duplicate:
            return (
                f"{title}: duplicate delivery, nothing applied; master {self.master_rows} rows\n\n"
                f"The same content was ingested earlier as batch {self.batch_id}.\n"
            )
        return (
            f"{title}: {self.status}; {self.rows_in} rows in, {self.rows_accepted} accepted, "
            f"{self.rows_rejected} rejected; master {self.master_rows} rows\n\n"
            f"contract: {self.contract}\n"
        )

    @classmethod
    def from_report(
        cls, report: dict[str, Any], master_rows: int, duplicate: bool = False
    ) -> BatchRecord:
        return cls(
            batch_id=str(report["batch_id"]),
            name=report.get("name"),
            status=str(report["status"]),
            rows_in=int(report["rows_in"]),
            rows_accepted=int(report["rows_accepted"]),
            rows_rejected=int(report["rows_rejected"]),
            master_rows=master_rows,
            contract=str(report["contract"]),
            duplicate=duplicate,
        )


def clear_stale_index_lock(root: Path) -> None:
    """Remove a `.git/index.lock` left by a killed git process.

    The pipeline holds the drop-folder lock whenever it commits, so no other pipeline process can
    be inside git here; a lock file that has not been touched for a few seconds is a leftover.
    """
    lock = root / ".git" / "index.lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > _STALE_INDEX_LOCK_SECONDS:
        log.warning("removing stale %s (%.0f s old)", lock, age)
        lock.unlink(missing_ok=True)


def record(root: Path, paths: list[Path], message: str) -> str | None:
    """Commit `paths` (those that exist) with `message`; the new commit id, or None if unchanged."""
    clear_stale_index_lock(root)
    existing = [str(p.relative_to(root)) for p in paths if p.exists()]
    if existing:
        git(["add", "--", *existing], root)
    if git(["diff", "--cached", "--quiet"], root, check=False).returncode == 0:
        log.info("lineage: nothing new to record")
        return None
    crashpoints.reach("lineage commit")
    git([*AUTHOR, "commit", "--no-verify", "--quiet", "-m", message], root)
    commit = git(["rev-parse", "HEAD"], root).stdout.strip()
    log.info("lineage: recorded %s", commit[:12])
    return commit
