"""The `_PROCESSING` lock: who holds the active batch, and whether that holder is still alive.

In: the drop folder, the would-be owner, the clock. Out: the lock file, created atomically with its
owner record (run id, host, pid and the pid's start time, claim and heartbeat times), and answers to
"is it mine, live, or stale?". Creating the lock is an exclusive hard link of a fully written file,
so two claimants can never both win; taking over a stale lock first renames it aside, which again
only one claimant can do.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import psutil

from mainstem import crashpoints
from mainstem.delivery import CLAIM_TMP_PREFIX, PROCESSING, READY
from mainstem.durable import fsync_dir, storage_errors

LockState = Literal["mine", "live", "stale"]


@dataclass(frozen=True)
class LockOwner:
    run_id: str
    host: str
    pid: int
    pid_started: float
    claimed_at: float
    heartbeat_at: float
    batch_id: str | None = None

    def describe(self) -> str:
        claimed = datetime.fromtimestamp(self.claimed_at, UTC).isoformat(timespec="seconds")
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, claimed {claimed})"


def process_start_time(pid: int) -> float:
    """When `pid` started, or 0.0 when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return 0.0


def owner_for(run_id: str, now: float, batch_id: str | None = None) -> LockOwner:
    """A lock owner record for this process."""
    pid = os.getpid()
    return LockOwner(run_id, socket.gethostname(), pid, process_start_time(pid), now, now, batch_id)


def lock_path(incoming: Path) -> Path:
    return incoming / PROCESSING


def read_owner(incoming: Path) -> LockOwner | None:
    """The lock's owner; None when unlocked. An unreadable lock reads as an unknown owner."""
    path = lock_path(incoming)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return LockOwner(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        return LockOwner("unknown", "unknown", 0, 0.0, mtime, mtime)


def owner_alive(owner: LockOwner) -> bool | None:
    """True/False when the owner's process can be checked from here; None when it cannot."""
    if owner.host != socket.gethostname() or owner.pid <= 0:
        return None
    started = process_start_time(owner.pid)
    # A pid that was recycled by a newer process does not count as the owner.
    return started != 0.0 and abs(started - owner.pid_started) < 1.0


def state_of(
    owner: LockOwner, run_id: str, now: float, stale_after: float, dead_grace: float
) -> LockState:
    """Whether a lock belongs to run `run_id`, to a live holder, or to nobody any more."""
    if owner.run_id == run_id:
        return "mine"
    idle = now - owner.heartbeat_at
    if idle > stale_after:
        return "stale"
    alive = owner_alive(owner)
    if alive:
        return "live"
    if alive is False and idle > dead_grace:
        return "stale"
    return "live"


def _write_tmp(incoming: Path, owner: LockOwner) -> Path:
    tmp = incoming / f"{CLAIM_TMP_PREFIX}{owner.host}-{owner.pid}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(asdict(owner), handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def acquire(incoming: Path, owner: LockOwner) -> bool:
    """Create the lock for `owner` if there is none; True when this call created it.

    The `_READY` marker is removed afterwards: the lock, not the marker, now says the batch is
    taken. A crash between the two leaves both, which the next claim resolves as a stale lock.
    """
    with storage_errors(f"could not take the lock in {incoming}"):
        tmp = _write_tmp(incoming, owner)
        try:
            crashpoints.reach("claim lock")
            os.link(tmp, lock_path(incoming))
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        crashpoints.reach("claim remove _READY")
        (incoming / READY).unlink(missing_ok=True)
        fsync_dir(incoming)
    return True


def take_over(incoming: Path, stale: LockOwner, owner: LockOwner) -> bool:
    """Replace a stale lock with one for `owner`; False when another claimant got there first."""
    aside = incoming / f"{CLAIM_TMP_PREFIX}stale-{owner.host}-{owner.pid}"
    with storage_errors(f"could not take over the lock in {incoming}"):
        current = read_owner(incoming)
        if current != stale:
            return False
        try:
            os.rename(lock_path(incoming), aside)
        except FileNotFoundError:
            return False
        aside.unlink()
        return acquire(incoming, owner)


def heartbeat(incoming: Path, owner: LockOwner, now: float) -> LockOwner:
    """Re-stamp the lock with this process as the holder and `now` as its last sign of life."""
    pid = os.getpid()
    renewed = replace(owner, pid=pid, pid_started=process_start_time(pid), heartbeat_at=now)
    with storage_errors(f"could not renew the lock in {incoming}"):
        tmp = _write_tmp(incoming, renewed)
        os.replace(tmp, lock_path(incoming))
        fsync_dir(incoming)
    return renewed


def release(incoming: Path) -> None:
    """Remove the lock. Removing a lock that is already gone is not an error."""
    with storage_errors(f"could not remove the lock in {incoming}"):
        crashpoints.reach("release lock")
        lock_path(incoming).unlink(missing_ok=True)
        fsync_dir(incoming)
