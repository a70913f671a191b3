"""Claiming a delivered batch from the drop folder, and releasing it when the pipeline is done.

In: the ingest params, the claimant's run id and the clock. Out: one of
- Claimed: the lock is ours and `claimed_batch.json` names the batch, so `dvc repro` ingests it;
- Idle: nothing to do now (nothing ready, files still arriving), or the batch is `locked`: another
  live run holds it;
- Rejected: the delivery cannot be ingested at all; it was moved to quarantine with a report.
Release removes the batch's files from the drop folder (or moves them to quarantine when the
contract rejected the batch) and then the lock. Every step can be repeated after a crash.

The drop folder is a queue (see `queue`): one batch per sub-folder, plus a batch written directly
into it. The claim takes the oldest `_READY` it can, one at a time: an entry whose files do not
match its manifest yet is passed over, not waited for. The one `_PROCESSING` lock at the top of
the drop folder names the entry it holds, so resuming, releasing and quarantining act on that
entry's folder alone.

A delivery whose content is already in the raw store (the same tables under other names, the same
images) is claimed as a duplicate: its ticket names the batch it repeats, so the pipeline applies
nothing new and the lineage says so. A `_READY` written before the files match the producer's
manifest is left alone until `manifest_deadline_seconds` after it appeared, then rejected whole.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from mainstem import crashpoints
from mainstem.durable import (
    fsync_dir,
    read_json,
    read_json_object,
    storage_errors,
    write_bytes,
    write_json,
)
from mainstem.intake import lock
from mainstem.intake.delivery import (
    MANIFEST,
    DeliveredFile,
    Delivery,
    batch_id_of,
    entry_dir,
    hash_file,
    manifest_mismatches,
    printable,
    read_delivery,
    scan,
)
from mainstem.intake.lock import LockOwner
from mainstem.intake.queue import ROOT_ENTRY, queue_folders, ready_entries
from mainstem.intake.raw_store import pack_meta, pack_path, record_of
from mainstem.params import IngestParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    batch_id: str
    owner: LockOwner
    name: str | None
    recovered_from: LockOwner | None = None
    resumed: bool = False
    duplicate_of: dict[str, object] | None = None

    @property
    def duplicate(self) -> bool:
        """The content was ingested before: this delivery brings nothing new."""
        return self.duplicate_of is not None

    def summary(self) -> dict[str, object]:
        return {
            "claimed": True,
            "batch_id": self.batch_id,
            "name": self.name,
            "resumed": self.resumed,
            "recovered_from": self.recovered_from.describe() if self.recovered_from else None,
            "duplicate": self.duplicate,
            "duplicate_of": self.duplicate_of,
        }


@dataclass(frozen=True)
class Idle:
    reason: str
    locked: bool = False  # another run holds the batch; True means "not mine to process now"


@dataclass(frozen=True)
class Rejected:
    batch_id: str
    reasons: tuple[str, ...]
    quarantine: Path


ClaimResult = Claimed | Idle | Rejected


def is_ingested(raw_dir: Path, batch_id: str) -> bool:
    return record_of(raw_dir, batch_id) is not None


def first_delivery(raw_dir: Path, batch_id: str) -> dict[str, object] | None:
    """The ingested batch `batch_id` as first delivered (name, sequence); None if not ingested."""
    record = record_of(raw_dir, batch_id)
    if record is None:
        return None
    return {"batch_id": batch_id, "name": record.name, "sequence": record.sequence}


def read_ticket(params: IngestParams) -> dict[str, object]:
    """The claim record, `{}` before the first claim."""
    try:
        ticket = read_json(params.claimed_batch)
    except FileNotFoundError:
        return {}
    return ticket if isinstance(ticket, dict) else {}


def _listed(files: object) -> list[DeliveredFile]:
    if not isinstance(files, list):
        return []
    return [DeliveredFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in files]


def ticket_files(params: IngestParams, ticket: dict[str, object]) -> list[DeliveredFile]:
    """The claimed batch's files: the claim's own list while it lasts, else the raw snapshot's.

    The claim's list (`claimed_files_path`, which git ignores) counts only if it hashes to the
    ticket's batch id. Tickets written before the list moved out of them carry it inline.
    """
    if isinstance(ticket.get("files"), list):
        return _listed(ticket["files"])
    batch_id = ticket.get("batch_id")
    if not batch_id:
        return []
    # The claim's own list first: a re-delivery of ingested content may name its files
    # differently from the first delivery, whose names the raw snapshot keeps.
    claimed = read_json_object(claimed_files_path(params))
    for listing in (claimed, pack_meta(pack_path(params.raw_dir))):
        if listing is None:
            continue
        files = _listed(listing.get("files"))
        if listing.get("batch_id") == batch_id and batch_id_of(files) == batch_id:
            return files
    return []


def claimed_files_path(params: IngestParams) -> Path:
    """Where the claim lists the delivered files while the claim lasts, beside the ticket.

    Ingest copies from it and the raw snapshot keeps the list for good, so the git-tracked
    ticket stays a few lines long whatever the size of the batch.
    """
    ticket = params.claimed_batch
    return ticket.with_name(f"{ticket.stem}.files.json")


def _drop_claimed_files(params: IngestParams) -> None:
    path = claimed_files_path(params)
    with storage_errors(f"could not remove {path}"):
        path.unlink(missing_ok=True)


def claim_batch(
    params: IngestParams, run_id: str, now: float, one_process: bool = False
) -> ClaimResult:
    """Take the oldest batch waiting in the drop folder, or recover one whose holder died or
    gave up.

    `one_process` says the claiming run lives and dies with this process (see `lock.LockOwner`).
    With `ingest.incoming_dir: s3://...` the batch comes from the S3 drop zone (`s3_claim`).
    """
    if params.drop_zone_url:
        from mainstem.intake.s3_claim import claim_from_s3

        return claim_from_s3(params, run_id, now, one_process)
    incoming = params.incoming_dir
    if not incoming.is_dir():
        return Idle(f"drop folder {incoming} does not exist")
    lock.clear_stale_claim_files(incoming)
    holder = lock.read_owner(incoming)
    if holder is not None:
        mine = lock.owner_for(run_id, now, holder.batch_id, one_process, holder.entry)
        return _claim_held(params, holder, mine, now)
    waiting: list[str] = []
    for entry in ready_entries(incoming):
        mine = lock.owner_for(run_id, now, None, one_process, entry.name)
        result = _claim_ready(params, mine, now)
        if isinstance(result, Idle) and not result.locked:
            waiting.append(f"{entry.describe()}: {result.reason}" if entry.name else result.reason)
            continue
        return result
    if waiting:
        return Idle("; ".join(waiting))
    return Idle("nothing ready: no _READY in the drop folder")


def batch_folder(incoming: Path, owner: LockOwner | None) -> Path:
    """Where the batch `owner` claimed sits: its queue entry's folder."""
    return entry_dir(incoming, owner.entry if owner else ROOT_ENTRY)


def claimed_folder(params: IngestParams) -> Path:
    """Where the claimed batch's files sit while the claim lasts (the lock names its entry)."""
    return batch_folder(params.incoming_dir, lock.read_owner(params.incoming_dir))


def _read_entry(incoming: Path, entry: str) -> Delivery:
    """The delivery in queue entry `entry`; the root entry leaves the other entries out."""
    apart = queue_folders(incoming) if entry == ROOT_ENTRY else frozenset()
    return read_delivery(entry_dir(incoming, entry), apart)


def takeover_time(params: IngestParams, holder: LockOwner) -> str:
    """When a run may take over `holder`'s lock, as things stand now, in words."""
    since = lock.stale_from(holder, params.stale_lock_seconds, params.dead_owner_grace_seconds)
    when = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
    if lock.owner_alive(holder) is False:
        return f"{when}, {params.dead_owner_grace_seconds} s after its last heartbeat"
    return f"{when} if it stays silent that long (ingest.stale_lock_seconds)"


def _claim_held(
    params: IngestParams, holder: LockOwner, mine: LockOwner, now: float
) -> ClaimResult:
    incoming = params.incoming_dir
    state = lock.state_of(
        holder, mine.run_id, now, params.stale_lock_seconds, params.dead_owner_grace_seconds
    )
    if state == "live":
        return Idle(
            f"batch {holder.batch_id} is being processed by {holder.describe()}; another run "
            f"may take it over from {takeover_time(params, holder)}",
            locked=True,
        )
    if state == "mine":
        owner = lock.heartbeat(incoming, holder, now)
        return _resume(params, owner, recovered_from=None)
    if not lock.take_over(incoming, holder, mine):
        return Idle("another claimant is recovering the stale lock", locked=True)
    log.warning("took over stale lock of %s for run %s", holder.describe(), mine.run_id)
    return _resume(params, mine, recovered_from=holder)


def _resume(
    params: IngestParams, owner: LockOwner, recovered_from: LockOwner | None
) -> ClaimResult:
    """Carry on with a batch already claimed: from the ticket if ingested, else from the files."""
    ticket = read_ticket(params)
    batch_id = owner.batch_id
    if (
        batch_id
        and ticket.get("batch_id") == batch_id
        and (is_ingested(params.raw_dir, batch_id) or _files_match(params, ticket, owner))
    ):
        return Claimed(
            batch_id,
            owner,
            _name(ticket),
            recovered_from=recovered_from,
            resumed=True,
            duplicate_of=_duplicate_of(ticket),
        )
    delivery = _read_entry(params.incoming_dir, owner.entry)
    return _finish_claim(params, owner, delivery, recovered_from=recovered_from, resumed=True)


def _files_match(params: IngestParams, ticket: dict[str, object], owner: LockOwner) -> bool:
    files = ticket_files(params, ticket)
    if not files:
        return False
    folder = batch_folder(params.incoming_dir, owner)
    for item in files:
        try:
            if hash_file(folder / item.path) != (item.size, item.sha256):
                return False
        except OSError:
            return False
    return True


def _name(ticket: dict[str, object]) -> str | None:
    name = ticket.get("name")
    return str(name) if name is not None else None


def _duplicate_of(ticket: dict[str, object]) -> dict[str, object] | None:
    first = ticket.get("duplicate_of")
    return first if isinstance(first, dict) else None


def _signature(incoming: Path, entry: str) -> list[tuple[str, int, int, int]]:
    """What a queue entry holds, by name, size, mtime and inode: cheap to take twice."""
    apart = queue_folders(incoming) if entry == ROOT_ENTRY else frozenset()
    found, problems = scan(entry_dir(incoming, entry), apart)
    entries = [(rel, info.st_size, info.st_mtime_ns, info.st_ino) for rel, info in found]
    return entries + [(p.path, 0, 0, 0) for p in problems]


def _claim_ready(params: IngestParams, owner: LockOwner, now: float) -> ClaimResult:
    incoming = params.incoming_dir
    ready = lock.ready_marker(incoming, owner)
    try:
        before = _signature(incoming, owner.entry)
        delivery = _read_entry(incoming, owner.entry)
        ready_at = ready.stat().st_mtime
    except FileNotFoundError:
        return Idle("another claimant took the batch first", locked=True)
    mismatches = manifest_mismatches(delivery)
    if mismatches and not delivery.problems:
        deadline = ready_at + params.manifest_deadline_seconds
        if now < deadline:
            until = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds")
            return Idle(
                f"_READY is there but the files do not match {MANIFEST} yet "
                f"({mismatches[0]}); waiting until {until}, then the delivery is rejected"
            )
    owner = replace(owner, batch_id=delivery.batch_id)
    if not lock.acquire(incoming, owner, ready_required=True):
        return Idle("another claimant took the batch first", locked=True)
    if _signature(incoming, owner.entry) != before:
        # The producer is still writing: hand the batch back exactly as it was, deadline included.
        with storage_errors(f"could not hand back the batch in {ready.parent}"):
            write_bytes(ready, b"")
            os.utime(ready, (ready_at, ready_at))
        lock.release(incoming)
        return Idle("the files changed while they were being claimed; the next claim looks again")
    return _finish_claim(params, owner, delivery, recovered_from=None, resumed=False)


def _finish_claim(
    params: IngestParams,
    owner: LockOwner,
    delivery: Delivery,
    recovered_from: LockOwner | None,
    resumed: bool,
) -> ClaimResult:
    if resumed and not delivery.files and not delivery.problems:
        # The previous holder released every file and died before removing the lock.
        _drop_claimed_files(params)
        lock.release(params.incoming_dir)
        return Idle("cleared a stale lock whose batch had already been released")
    reasons = [p.describe() for p in delivery.problems]
    reasons += manifest_mismatches(delivery) if not reasons else []
    if not delivery.files and not reasons:
        reasons = ["the delivery holds no files"]
    if reasons:
        report = rejection_report(delivery.batch_id, reasons, stage="claim")
        destination = quarantine_delivery(params, delivery.batch_id, report, entry=owner.entry)
        lock.release(params.incoming_dir)
        return Rejected(delivery.batch_id, tuple(reasons), destination)
    if owner.batch_id != delivery.batch_id:
        owner = lock.heartbeat(
            params.incoming_dir,
            LockOwner(**{**owner.__dict__, "batch_id": delivery.batch_id}),
            owner.heartbeat_at,
        )
    duplicate_of = first_delivery(params.raw_dir, delivery.batch_id)
    if duplicate_of is not None:
        log.warning(
            "delivery %s is a duplicate of batch %s (first delivered as %s, sequence %s): "
            "the same content by hash; nothing new to apply",
            repr(delivery.name) if delivery.name else "(unnamed)",
            delivery.batch_id,
            repr(duplicate_of["name"]) if duplicate_of["name"] else "(unnamed)",
            duplicate_of["sequence"],
        )
    crashpoints.reach("claim ticket")
    write_json(claimed_files_path(params), delivery.file_list())
    write_json(params.claimed_batch, {**delivery.ticket(), "duplicate_of": duplicate_of})
    return Claimed(
        delivery.batch_id,
        owner,
        delivery.name,
        recovered_from=recovered_from,
        resumed=resumed,
        duplicate_of=duplicate_of,
    )


def rejection_report(batch_id: str, reasons: list[str], stage: str) -> dict[str, object]:
    """The report of a batch rejected whole at `stage`, for reasons the report lists."""
    return {"batch_id": batch_id, "status": "rejected", "stage": stage, "reasons": reasons}


def quarantine_delivery(
    params: IngestParams,
    batch_id: str,
    report: dict[str, object],
    only: list[DeliveredFile] | None = None,
    entry: str = ROOT_ENTRY,
) -> Path:
    """Move the delivery in queue entry `entry` (or just `only`) into quarantine, with `report`.

    Entries are renamed, never read, so FIFOs and device files move as safely as data files.
    """
    incoming = entry_dir(params.incoming_dir, entry)
    destination = params.quarantine_dir / batch_id
    with storage_errors(f"could not quarantine batch {batch_id}"):
        (destination / "files").mkdir(parents=True, exist_ok=True)
        write_json(destination / "report.json", report)
        names = (
            [f.path for f in only] if only is not None else _all_entries(params.incoming_dir, entry)
        )
        # every folder the batch's files sit in, moved now or by a run that died half-way
        touched = {destination, destination / "files", incoming}
        touched |= {(incoming / rel).parent for rel in names}
        for rel in names:
            source = incoming / rel
            if not (source.exists() or source.is_symlink()):
                continue
            target = destination / "files" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            touched |= {source.parent, target.parent}
            if target.exists() or target.is_symlink():
                source.unlink()
            else:
                crashpoints.reach("quarantine move")
                os.rename(source, target)
        manifest = incoming / MANIFEST
        if manifest.exists():
            crashpoints.reach("quarantine move manifest")
            os.replace(manifest, destination / MANIFEST)
        _prune_emptied(touched, params.incoming_dir)
        _fsync_dirs(touched)
    return destination


def _fsync_dirs(directories: set[Path]) -> None:
    """Make renames and removals in `directories` durable, deepest first."""
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        if directory.is_dir():
            fsync_dir(directory)


def _all_entries(incoming: Path, entry: str) -> list[str]:
    """Every payload entry of queue entry `entry`: regular files and the ones that are not."""
    folder = entry_dir(incoming, entry)
    if not folder.is_dir():
        return []
    apart = queue_folders(incoming) if entry == ROOT_ENTRY else frozenset()
    found, problems = scan(folder, apart)
    return sorted({rel for rel, _info in found} | {p.path for p in problems})


def release_batch(
    params: IngestParams, rejected_report: dict[str, object] | None, owner: LockOwner | None = None
) -> list[str]:
    """Clear the claimed batch from the drop folder and drop the lock; the files left behind.

    Files are removed only when their bytes still equal the claim's record; anything else (a
    file changed after the claim, a new delivery written too early) stays for the operator. A
    batch the contract rejected is moved to quarantine with its report instead of being removed.
    With `owner`, nothing is touched unless the lock is still that claim, and the lock is dropped
    only while it is (see `lock.release`); otherwise a LockError says who holds it now.
    """
    if params.drop_zone_url:
        from mainstem.intake.s3_claim import release_to_s3

        return release_to_s3(params, rejected_report, owner)
    drop = params.incoming_dir
    if owner is not None:
        lock.heartbeat(drop, owner, time.time())
    holder = owner or lock.read_owner(drop)
    entry = holder.entry if holder else ROOT_ENTRY
    incoming = entry_dir(drop, entry)
    ticket = read_ticket(params)
    batch_id = str(ticket.get("batch_id") or batch_id_of([]))
    files = ticket_files(params, ticket)
    if rejected_report is not None:
        report = rejected_report or rejection_report(batch_id, [], stage="validate")
        quarantine_delivery(params, batch_id, report, only=files, entry=entry)
    else:
        with storage_errors(f"could not clear batch {batch_id} from {incoming}"):
            # every folder the batch's files sit in, removed now or by a run that died half-way
            touched = {incoming} | {(incoming / item.path).parent for item in files}
            for item in files:
                path = incoming / item.path
                try:
                    if hash_file(path) == (item.size, item.sha256):
                        crashpoints.reach("release remove file")
                        path.unlink()
                except OSError:
                    continue
            if (incoming / MANIFEST).exists():
                crashpoints.reach("release remove manifest")
                (incoming / MANIFEST).unlink(missing_ok=True)
            _prune_emptied(touched, drop)
            _fsync_dirs(touched)
    leftovers = [printable(rel) for rel in _all_entries(drop, entry)]
    if leftovers:
        log.warning("left in %s after batch %s: %s", incoming, batch_id, leftovers)
    _drop_claimed_files(params)
    lock.release(drop, owner)
    return leftovers


def _prune_emptied(touched: set[Path], drop: Path) -> None:
    """Remove the folders of the drop folder that the batch's files left empty, deepest first.

    Only folders that held the batch are looked at (and the folders above them, up to the drop
    folder), so an empty folder another producer has just made for its batch stays. Folders
    removed here leave `touched`; their parents join it, to be synced.
    """
    candidates: set[Path] = set()
    for folder in touched:
        while folder != drop and drop in folder.parents:
            candidates.add(folder)
            folder = folder.parent
    for folder in sorted(candidates, key=lambda d: len(d.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            continue  # not empty (or already gone): it stays as it is
        touched.discard(folder)
        touched.add(folder.parent)
