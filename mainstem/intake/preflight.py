"""Checks the batch path runs before any heavy work: can it write everywhere it must, is there room?

In: the params of a workspace with a batch waiting (or claimed) in its drop folder. Out: nothing,
or a StorageError naming the first path that cannot be written (permission denied, an immutable
file, a read-only file system, a device that fails its writes) or the file system that lacks room
for the batch. It runs before the claim, so a failed preflight leaves the batch exactly where it
was. Every check is a real system call: `access(2)` for the ownership, mode and immutable bit of
each path that will be replaced, and a probe file written, fsynced and removed in each directory
that receives new files. The room check is an estimate: a run that passes it can still hit a full
disk later, and then fails just as cleanly, with the batch still claimed.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mainstem.durable import fsync_dir, storage_errors
from mainstem.errors import StorageError
from mainstem.intake import lock
from mainstem.intake.delivery import CLAIM_TMP_PREFIX, entry_dir, scan
from mainstem.intake.queue import ROOT_ENTRY, queue_folders, ready_entries
from mainstem.params import Params

PROBE_BYTES = 4096
SPACE_FACTOR = 3  # the raw snapshot, its copy in the DVC cache, and room for derived data
SPACE_RESERVE = 1 << 20


@dataclass(frozen=True)
class WriteTarget:
    path: Path
    purpose: str
    replaced: bool  # the entry itself is renamed or rewritten, not only written into


def write_targets(params: Params) -> list[WriteTarget]:
    """Every path the batch path writes, and what it is for."""
    root = params.root
    return [
        WriteTarget(params.ingest.incoming_dir, "the drop folder (lock and release)", False),
        WriteTarget(params.ingest.claimed_batch, "the claim record", True),
        WriteTarget(params.ingest.raw_dir, "the raw store", False),
        WriteTarget(params.validate.validated_dir, "the validated store", True),
        WriteTarget(params.merge.master_dir, "the master", True),
        WriteTarget(params.validate.metrics_file, "the validation metrics", True),
        WriteTarget(params.merge.metrics_file, "the master metrics", True),
        WriteTarget(params.ingest.quarantine_dir, "the quarantine", False),
        WriteTarget(root / "dvc.lock", "dvc.lock", True),
        WriteTarget(root / ".dvc" / "cache", "the DVC cache", False),
        WriteTarget(root / ".dvc" / "tmp", "DVC's lock files", False),
        WriteTarget(root / ".git", "the lineage commits", False),
    ]


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _denied(path: Path, purpose: str, code: int) -> StorageError:
    reason = {
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
    }.get(code, "permission denied or the entry is immutable")
    return StorageError(
        f"preflight: cannot write {path} ({purpose}): {reason}; fix its owner, mode or "
        "attributes (see `ls -l` and `lsattr`) and run again. Nothing was claimed or changed."
    )


def check_access(target: WriteTarget) -> None:
    """The target, or the nearest folder that will hold it, is writable by this process."""
    holder = target.path.parent if target.replaced else target.path
    for path in {_existing(holder), *([target.path] if target.path.exists() else [])}:
        mode = os.W_OK | (os.X_OK if path.is_dir() else 0)
        if not os.access(path, mode, effective_ids=os.access in os.supports_effective_ids):
            code = errno.EROFS if _read_only(path) else errno.EPERM
            raise _denied(path, target.purpose, code)


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def probe(directory: Path, purpose: str, incoming: Path) -> None:
    """Write, fsync and remove a small file in `directory`: the writes the pipeline will make.

    In the drop folder the probe is named like a claimant's scratch file, which no scan of the
    delivery counts; elsewhere like any scratch file, which git and DVC ignore.
    """
    if directory == incoming:
        name = f"{CLAIM_TMP_PREFIX}preflight-{socket.gethostname()}-{os.getpid()}"
    else:
        name = f".mainstem-preflight.tmp-{os.getpid()}"
    path = directory / name
    with storage_errors(f"preflight: cannot write in {directory} ({purpose})"):
        try:
            with open(path, "wb") as handle:
                handle.write(b"\0" * PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            path.unlink(missing_ok=True)
        fsync_dir(directory)


def waiting_bytes(incoming: Path, entry: str = ROOT_ENTRY) -> int:
    """The size of the regular files of one queue entry (the root's leaves the others out)."""
    folder = entry_dir(incoming, entry)
    if not folder.is_dir():
        return 0
    apart = queue_folders(incoming) if entry == ROOT_ENTRY else frozenset()
    found, _problems = scan(folder, apart)
    return sum(info.st_size for _rel, info in found)


def next_entry(incoming: Path) -> str | None:
    """The queue entry the next claim works on: the claimed one, else the oldest ready one."""
    holder = lock.read_owner(incoming)
    if holder is not None:
        return holder.entry
    ready = ready_entries(incoming)
    return ready[0].name if ready else None


def check_space(params: Params, batch_bytes: int) -> None:
    """Each file system the batch lands on has room for it, by a generous estimate."""
    need: dict[int, tuple[Path, int]] = {}
    for path, share in (
        (params.ingest.raw_dir, SPACE_FACTOR - 1),
        (params.root / ".dvc" / "cache", 1),
    ):
        where = _existing(path)
        device = where.stat().st_dev
        _seen, bytes_so_far = need.get(device, (where, 0))
        need[device] = (where, bytes_so_far + share * batch_bytes)
    for where, bytes_needed in need.values():
        stats = os.statvfs(where)
        free = stats.f_bavail * stats.f_frsize
        wanted = bytes_needed + SPACE_RESERVE
        if free < wanted:
            raise StorageError(
                f"preflight: the file system of {where} has {_mib(free)} free, and a batch of "
                f"{_mib(batch_bytes)} needs about {_mib(wanted)}; the disk is full: free space "
                "and run again. Nothing was claimed or changed."
            )


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def preflight(params: Params) -> None:
    """Refuse to start a batch that cannot finish for lack of permission or room.

    Does nothing when no batch waits (no `_READY`, no `_PROCESSING`): then there is no work to
    protect, and a disk problem is reported by the first run that has a batch. The room asked
    for is that of the batch the claim works on next, not of the whole queue.
    """
    incoming = params.ingest.incoming_dir
    entry = next_entry(incoming) if incoming.is_dir() else None
    if entry is None:
        return
    targets = write_targets(params)
    for target in targets:
        check_access(target)
    probed = sorted(
        {_existing(t.path.parent if t.replaced else t.path): t.purpose for t in targets}.items()
    )
    for directory, purpose in probed:
        probe(directory, purpose, incoming)
    check_space(params, waiting_bytes(incoming, entry))
