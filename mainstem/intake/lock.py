"""The `_PROCESSING` lock: who holds the active batch, and whether that holder is still alive.

In: the drop folder, the would-be owner, the clock. Out: the lock file, created atomically with its
owner record (run id, host, pid and the pid's start time, claim and heartbeat times, whether the
whole run lives in that one process, whether the run gave the batch up after an error), and answers
to "is it mine, live, or stale, and from when may it be taken over?". A run that ends in an error
marks its lock as given up, so the next run resumes the batch at once; a run that lives in one
process and died without a word (SIGKILL) is found gone by its pid and start time, and its lock is
taken over at once too. Only a run that hands the lock from one process to the next (an Airflow
task per step) keeps it through `dead_grace` seconds without a live process: the gap between two of
its tasks. Creating the lock is an exclusive hard link of a fully written file,
so two claimants can never both win. Taking over a stale lock and renewing one are
read-compare-replace steps; they run under an flock on `.claim-mutex`, so a claimant can never take
over a lock that another one has just renewed or taken over, and a holder that lost its lock (a
zombie task whose lock was recovered) finds out at its next heartbeat instead of writing on. A
takeover replaces the lock in one rename, so a crash in the middle never leaves the batch unlocked
and without `_READY`, where no claim would find it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from mainstem import crashpoints
from mainstem.durable import fsync_dir, storage_errors
from mainstem.errors import LockError
from mainstem.intake import process_start
from mainstem.intake.delivery import CLAIM_TMP_PREFIX, PROCESSING, READY, entry_dir

LockState = Literal["mine", "live", "stale"]
MUTEX = f"{CLAIM_TMP_PREFIX}mutex"


@dataclass(frozen=True)
class LockOwner:
    run_id: str
    host: str
    pid: int
    pid_started: float
    claimed_at: float
    heartbeat_at: float
    batch_id: str | None = None
    # The run lives and dies with `pid` (the CLI); False when its steps run in one process each.
    one_process: bool = False
    # The run stopped on an error and left the batch for the next run to resume.
    given_up: bool = False
    # The queue entry the batch came from: its sub-folder of the drop folder, "" for the root.
    entry: str = ""

    def describe(self) -> str:
        claimed = datetime.fromtimestamp(self.claimed_at, UTC).isoformat(timespec="seconds")
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, claimed {claimed})"


def owner_for(
    run_id: str,
    now: float,
    batch_id: str | None = None,
    one_process: bool = False,
    entry: str = "",
) -> LockOwner:
    """A lock owner record for this process; `one_process` when the run ends with this process."""
    pid = os.getpid()
    started = process_start.started(pid)
    return LockOwner(
        run_id, socket.gethostname(), pid, started, now, now, batch_id, one_process, entry=entry
    )


def ready_marker(incoming: Path, owner: LockOwner) -> Path:
    """The `_READY` of the queue entry `owner` claims (or claimed)."""
    return entry_dir(incoming, owner.entry) / READY


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
    # A pid that was recycled by a newer process does not count as the owner.
    return process_start.is_same_process(owner.pid, owner.pid_started)


def stale_from(owner: LockOwner, stale_after: float, dead_grace: float) -> float:
    """From when another run may take the lock over, as things stand now; 0.0 for at once.

    A run that gave the batch up, or that lived in one process now gone, has left for good. A run
    that hands the lock from one task's process to the next may be between two tasks, so a gone
    pid waits `dead_grace` seconds. A holder that is alive, or on another host, is waited for
    until it has been silent for `stale_after` seconds.
    """
    if owner.given_up:
        return 0.0
    alive = owner_alive(owner)
    if alive is False:
        return 0.0 if owner.one_process else owner.heartbeat_at + dead_grace
    return owner.heartbeat_at + stale_after


def state_of(
    owner: LockOwner, run_id: str, now: float, stale_after: float, dead_grace: float
) -> LockState:
    """Whether a lock belongs to run `run_id`, to a live holder, or to nobody any more."""
    if owner.run_id == run_id:
        return "mine"
    return "stale" if now > stale_from(owner, stale_after, dead_grace) else "live"


@contextmanager
def claim_mutex(incoming: Path) -> Iterator[None]:
    """Serialise the lock's read-compare-write steps among the claimants of this drop folder.

    The kernel drops an flock when its holder dies, so a crash inside never blocks anyone.
    """
    fd = os.open(incoming / MUTEX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clear_stale_claim_files(incoming: Path) -> None:
    """Remove the scratch files of claimants on this host that died in the middle of a claim."""
    host = socket.gethostname()
    with storage_errors(f"could not tidy the claim files in {incoming}"):
        for path in incoming.glob(f"{CLAIM_TMP_PREFIX}*-*"):
            prefix, _sep, pid = path.name.rpartition("-")
            if not prefix.endswith(host) or not pid.isdigit() or int(pid) == os.getpid():
                continue
            if process_start.started(int(pid)) == 0.0:
                path.unlink(missing_ok=True)


def _write_tmp(incoming: Path, owner: LockOwner) -> Path:
    tmp = incoming / f"{CLAIM_TMP_PREFIX}{owner.host}-{owner.pid}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(asdict(owner), handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def acquire(incoming: Path, owner: LockOwner, ready_required: bool = False) -> bool:
    """Create the lock for `owner` if there is none; True when this call created it.

    The `_READY` marker is removed afterwards: the lock, not the marker, now says the batch is
    taken. A crash between the two leaves both, which the next claim resolves as a stale lock.
    With `ready_required`, a `_READY` that is already gone means another claimant took this batch
    (and released it) between our look and our link: the new lock is dropped and False returned.
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
        try:
            ready_marker(incoming, owner).unlink()
        except FileNotFoundError:
            if ready_required:
                lock_path(incoming).unlink(missing_ok=True)
                fsync_dir(incoming)
                return False
        _fsync_entry(incoming, owner)
        fsync_dir(incoming)
    return True


def _fsync_entry(incoming: Path, owner: LockOwner) -> None:
    """Make the removal of a sub-folder entry's `_READY` durable (the root's is synced anyway)."""
    folder = ready_marker(incoming, owner).parent
    if folder != incoming and folder.is_dir():
        fsync_dir(folder)


def take_over(incoming: Path, stale: LockOwner, owner: LockOwner) -> bool:
    """Replace a stale lock with one for `owner`; False when another claimant got there first.

    The new lock replaces the stale one in a single rename, so there is never a moment without a
    lock: a crash half-way leaves either the stale lock (recovered again) or ours.
    """
    with storage_errors(f"could not take over the lock in {incoming}"), claim_mutex(incoming):
        if read_owner(incoming) != stale:
            return False
        tmp = _write_tmp(incoming, owner)
        try:
            crashpoints.reach("take over stale lock")
            os.replace(tmp, lock_path(incoming))
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(incoming)
        # The stale holder may have died between creating the lock and removing `_READY`.
        ready = ready_marker(incoming, stale)
        if ready.exists():
            crashpoints.reach("claim remove _READY")
            ready.unlink(missing_ok=True)
            _fsync_entry(incoming, stale)
            fsync_dir(incoming)
    return True


def _same_claim(a: LockOwner, b: LockOwner) -> bool:
    return a.run_id == b.run_id and a.claimed_at == b.claimed_at


def heartbeat(incoming: Path, owner: LockOwner, now: float) -> LockOwner:
    """Re-stamp the lock with this process as the holder and `now` as its last sign of life.

    Raises LockError when the lock is no longer `owner`'s claim: another claimant recovered it
    (this run was taken for dead) or it was released, and this run must not write on.
    """
    pid = os.getpid()
    started = process_start.started(pid)
    renewed = replace(owner, pid=pid, pid_started=started, heartbeat_at=now, given_up=False)
    with storage_errors(f"could not renew the lock in {incoming}"), claim_mutex(incoming):
        current = read_owner(incoming)
        if current is None or not _same_claim(current, owner):
            held_by = current.describe() if current else "nobody"
            raise LockError(
                f"run {owner.run_id} lost the batch lock in {incoming} (now held by {held_by}); "
                "it stops here and leaves the batch to the current holder"
            )
        tmp = _write_tmp(incoming, renewed)
        crashpoints.reach("lock heartbeat")
        os.replace(tmp, lock_path(incoming))
        fsync_dir(incoming)
    return renewed


def give_up(incoming: Path, run_id: str) -> bool:
    """Mark run `run_id`'s lock as given up, so the next run resumes the batch at once.

    For a run that stops on an error of its own: the batch stays claimed (its files, its ticket),
    and nobody waits for a holder that will not come back. A lock another run holds is left alone.
    True when the lock was marked.
    """
    if read_owner(incoming) is None:
        return False
    with (
        storage_errors(f"could not mark the lock in {incoming} as given up"),
        claim_mutex(incoming),
    ):
        current = read_owner(incoming)
        if current is None or current.run_id != run_id:
            return False
        tmp = _write_tmp(incoming, replace(current, given_up=True))
        try:
            crashpoints.reach("give up lock")
            os.replace(tmp, lock_path(incoming))
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(incoming)
    return True


def release(incoming: Path, owner: LockOwner | None = None) -> None:
    """Remove the lock. Removing a lock that is already gone is not an error.

    With `owner`, the lock is removed only while it is still that claim, checked under the claim
    mutex: a run taken for dead, whose batch another claimant recovered, must not drop the new
    holder's lock. It gets a LockError instead, and the lock stays.
    """
    with storage_errors(f"could not remove the lock in {incoming}"):
        if owner is None:
            crashpoints.reach("release lock")
            lock_path(incoming).unlink(missing_ok=True)
            fsync_dir(incoming)
            return
        with claim_mutex(incoming):
            current = read_owner(incoming)
            if current is not None and not _same_claim(current, owner):
                raise LockError(
                    f"run {owner.run_id} did not release the batch lock in {incoming}: "
                    f"{current.describe()} holds it now"
                )
            crashpoints.reach("release lock")
            lock_path(incoming).unlink(missing_ok=True)
            fsync_dir(incoming)
