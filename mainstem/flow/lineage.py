"""Lineage commits: one git commit per processed batch in the pipeline workspace.

In: the workspace, what happened to the batch (its report and the master metrics). Out: a commit
carrying `dvc.lock`, the metrics files and the claim record, whose message names the batch and its
row counts, so `git log` reads as the history of the master. Recording twice is a no-op, so a
retried task never makes a second commit for the same batch. Lock files that a killed git process
left in `.git` are cleared first, once no git process is at work in the repository any more.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mainstem import crashpoints
from mainstem.commands import git
from mainstem.errors import LockError

log = logging.getLogger(__name__)
AUTHOR = ["-c", "user.name=mainstem pipeline", "-c", "user.email=pipeline@mainstem.invalid"]
# Objects, refs and the index reach the disk before `git commit` returns.
DURABLE = ["-c", "core.fsync=all", "-c", "core.fsyncMethod=fsync"]
GIT_BUSY_WAIT_SECONDS = 30.0
# The title of a batch's commit, as `BatchRecord.message` writes it: its id, then its name.
_BATCH_TITLE = re.compile(r"^batch (\S+) \((.*)\): (?:duplicate delivery|accepted|rejected)[,;]")


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
    first_name: str | None = None
    master_rows_before: int | None = None  # at the previous commit, when known
    master_changed: bool = False  # the master's content differs from the previous commit's

    def message(self) -> str:
        title = f"batch {self.batch_id}"
        if self.name:
            title += f" ({self.name})"
        first = f" ({self.first_name})" if self.first_name else ""
        if self.duplicate and not self.master_changed:
            return (
                f"{title}: duplicate delivery, nothing applied; master {self.master_rows} rows\n\n"
                f"The same content was ingested earlier as batch {self.batch_id}{first}.\n"
            )
        if self.duplicate:
            before = "?" if self.master_rows_before is None else str(self.master_rows_before)
            return (
                f"{title}: re-delivery, applied under contract {self.contract}; "
                f"{self.rows_in} rows in, {self.rows_accepted} accepted, {self.rows_rejected} "
                f"rejected; master {before} → {self.master_rows} rows\n\n"
                f"The same content was ingested earlier as batch {self.batch_id}{first}; the "
                "pipeline changed since, and this run changed the master.\n"
            )
        return (
            f"{title}: {self.status}; {self.rows_in} rows in, {self.rows_accepted} accepted, "
            f"{self.rows_rejected} rejected; master {self.master_rows} rows\n\n"
            f"contract: {self.contract}\n"
        )

    @classmethod
    def from_report(
        cls,
        report: dict[str, Any],
        master_rows: int,
        duplicate: bool = False,
        delivered_as: str | None = None,
        before: tuple[int | None, bool] = (None, False),
    ) -> BatchRecord:
        """The record of a batch from its validation report; `delivered_as` names a re-delivery.

        `before` is the master's rows at the previous commit and whether its content changed since.
        """
        first_name = report.get("name")
        return cls(
            batch_id=str(report["batch_id"]),
            name=delivered_as if duplicate and delivered_as else first_name,
            status=str(report["status"]),
            rows_in=int(report["rows_in"]),
            rows_accepted=int(report["rows_accepted"]),
            rows_rejected=int(report["rows_rejected"]),
            master_rows=master_rows,
            contract=str(report["contract"]),
            duplicate=duplicate,
            first_name=first_name if duplicate else None,
            master_rows_before=before[0],
            master_changed=before[1],
        )


def batches_named(root: Path, name: str) -> list[str]:
    """The ids of the batches whose lineage commits name them `name`, re-deliveries included."""
    completed = git(["log", "--format=%s"], root, check=False)
    if completed.returncode != 0:
        return []
    found = (_BATCH_TITLE.match(subject) for subject in completed.stdout.splitlines())
    return sorted({m.group(1) for m in found if m and m.group(2) == name})


def committed_text(root: Path, path: Path) -> str | None:
    """The file at `path` as the last commit holds it; None before it was first committed."""
    # `root` may be relative (`mainstem process` run inside the workspace), params' paths never
    relative = path.resolve().relative_to(root.resolve())
    shown = git(["show", f"HEAD:{relative.as_posix()}"], root, check=False)
    return shown.stdout if shown.returncode == 0 else None


# Held by `git gc --auto`, which git starts in the background after a commit once loose objects
# pile up (about every 500 batches) and which runs alongside later commits: not a commit's lock.
_GC_LOCKS = {"gc.log.lock"}


def git_lock_files(root: Path) -> list[Path]:
    """The lock files git holds while it changes the index, HEAD or a branch."""
    dot_git = root / ".git"
    found = [*dot_git.glob("*.lock"), *(dot_git / "refs" / "heads").rglob("*.lock")]
    return sorted(lock for lock in found if lock.name not in _GC_LOCKS)


def git_processes(root: Path) -> list[psutil.Process]:
    """Live git processes working in the repository at `root`."""
    found = []
    for process in psutil.process_iter(["name", "cwd", "status"]):
        info = process.info
        if info["name"] != "git" or info["status"] == psutil.STATUS_ZOMBIE or not info["cwd"]:
            continue
        cwd = Path(info["cwd"])
        if cwd == root or root in cwd.parents:
            found.append(process)
    return found


def clear_stale_git_locks(root: Path, wait: float = GIT_BUSY_WAIT_SECONDS) -> list[Path]:
    """Remove lock files in `.git` left by a git process that was killed; the files removed.

    A lock file is stale when no git process is at work in the repository: git takes its locks
    with O_EXCL and removes them before it exits, so only a killed git leaves one. The pipeline
    holds the drop-folder lock while it commits, so the one git process that may still be running
    is a leftover of the previous holder: wait for it (up to `wait` seconds), never break its lock.
    """
    locks = git_lock_files(root)
    if not locks:
        return []
    deadline = time.monotonic() + wait
    while busy := git_processes(root):
        if time.monotonic() > deadline:
            pids = ", ".join(str(p.pid) for p in busy)
            raise LockError(
                f"git is still running in {root} (pid {pids}) and holds {locks[0].name}; "
                "wait for it to finish, then retry"
            )
        time.sleep(0.2)
    removed = []
    for stale in git_lock_files(root):
        log.warning("removing %s, left by a git process that was killed", stale)
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def record(root: Path, paths: list[Path], message: str) -> str | None:
    """Commit `paths` (those that exist) with `message`; the new commit id, or None if unchanged.

    Only `paths` go into the commit, whatever else someone staged in the workspace.
    """
    clear_stale_git_locks(root)
    existing = [str(p.relative_to(root)) for p in paths if p.exists()]
    if not existing:
        log.info("lineage: nothing to record")
        return None
    git([*DURABLE, "add", "--", *existing], root)
    if git(["diff", "--cached", "--quiet", "--", *existing], root, check=False).returncode == 0:
        log.info("lineage: nothing new to record")
        return None
    crashpoints.reach("lineage commit")
    commit_args = ["commit", "--no-verify", "--quiet", "-m", message, "--", *existing]
    git([*AUTHOR, *DURABLE, *commit_args], root)
    commit = git(["rev-parse", "HEAD"], root).stdout.strip()
    log.info("lineage: recorded %s", commit[:12])
    return commit


def batch_of_subject(subject: str) -> str | None:
    """The batch id a lineage commit's title names; None for any other commit."""
    found = _BATCH_TITLE.match(subject)
    return found.group(1) if found else None
