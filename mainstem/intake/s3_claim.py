"""Claiming, renewing and releasing a batch of the S3 drop zone, behind the drop folder's functions.

In: the ingest params (`incoming_dir: s3://bucket/prefix`; `incoming_dir` on disk is then the
staging folder), the claimant's run id and the clock. Out: the same ClaimResult as the local drop
folder. A claim walks the zone's batches oldest `_READY` first, takes one batch's `_PROCESSING`
lease (created, or a stale one swapped by ETag), fetches its objects into the staging folder and
then runs the local claim on that folder unchanged: the batch id by content hash, the duplicate
check, the manifest check and its deadline. A rejected batch is quarantined on S3 too. The lease
we hold is remembered beside the fetched files (`.claim-s3lease.json`), so every later step,
whatever process runs it, renews it by compare-and-swap (`renew`) and stops on a LockError once
another claimant has taken it over. Release clears the batch on S3 (or quarantines it) first,
then the staging folder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mainstem import crashpoints
from mainstem.durable import clear_stale_tmp, read_json_object, storage_errors, write_json
from mainstem.errors import DropZoneError, LockError
from mainstem.intake import lock, s3_dropzone
from mainstem.intake.delivery import CLAIM_TMP_PREFIX, read_delivery, scan
from mainstem.intake.dropfolder import (
    Claimed,
    ClaimResult,
    Idle,
    Rejected,
    claim_batch,
    read_ticket,
    rejection_report,
    release_batch,
)
from mainstem.intake.lock import LockOwner
from mainstem.intake.s3_client import client
from mainstem.intake.s3_layout import DropZone, Entry, oldest_first, parse_drop_zone
from mainstem.intake.s3_lease import (
    Lease,
    create_lease,
    drop_lease,
    next_move,
    read_lease,
    renew_lease,
    swap_held,
    swap_lease,
)
from mainstem.params import IngestParams

log = logging.getLogger(__name__)
HELD = f"{CLAIM_TMP_PREFIX}s3lease.json"


def open_zone(params: IngestParams) -> tuple[Any, DropZone]:
    return client(params.s3_endpoint_url), parse_drop_zone(params.drop_zone_url)


def _local(params: IngestParams) -> IngestParams:
    return replace(params, drop_zone_url="")


def read_held(staging: Path) -> Lease | None:
    """The lease this workspace holds on the zone, as its last claim or heartbeat left it."""
    raw = read_json_object(staging / HELD)
    if raw is None:
        return None
    try:
        return Lease(str(raw["name"]), LockOwner(**raw["owner"]), str(raw["etag"]))
    except (KeyError, TypeError) as exc:
        raise DropZoneError(
            f"{staging / HELD} is not a lease record ({exc}); remove it and the staging "
            "folder's files, then claim again"
        ) from exc


def _remember(staging: Path, lease: Lease) -> None:
    with storage_errors(f"could not record the lease in {staging}"):
        staging.mkdir(parents=True, exist_ok=True)
        crashpoints.reach("s3 record lease")
        write_json(staging / HELD, asdict(lease))


def _empty_staging(staging: Path) -> None:
    """Remove everything fetched into the staging folder: copies, the originals are on S3."""
    with storage_errors(f"could not empty {staging}"):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Claimant:
    """One claim attempt: who claims, when, and the zone it claims from."""

    s3: Any
    zone: DropZone
    params: IngestParams
    run_id: str
    now: float
    one_process: bool

    @property
    def staging(self) -> Path:
        return self.params.incoming_dir

    def claim_locally(self) -> ClaimResult:
        return claim_batch(_local(self.params), self.run_id, self.now, self.one_process)


def claim_from_s3(
    params: IngestParams, run_id: str, now: float, one_process: bool = False
) -> ClaimResult:
    """Take the oldest ready batch of the S3 drop zone, or carry on with the one we hold."""
    s3, zone = open_zone(params)
    me = Claimant(s3, zone, params, run_id, now, one_process)
    if me.staging.is_dir():  # a claimant killed while recording its lease left its scratch file
        clear_stale_tmp(me.staging / HELD)
    held = read_held(me.staging)
    if held is not None:
        if lock.read_owner(me.staging) is not None:
            return _claim_held(me, held)
        # A fetch cut short: give the batch back whole and start over from the listing.
        with contextlib.suppress(LockError):  # someone took it over since: theirs now
            drop_lease(s3, zone, held)
        _empty_staging(me.staging)
    elif _holds_files(me.staging):
        raise DropZoneError(
            f"{me.staging} holds files not fetched from {zone.url}; move them out (the staging "
            "folder of an S3 drop zone is the pipeline's own)"
        )
    waiting: list[Idle] = []
    for entry in _candidates(s3, zone):
        result = _try_entry(me, entry)
        if isinstance(result, Idle):
            waiting.append(result)
        elif result is not None:
            return result
    if waiting:
        return Idle(waiting[0].reason, locked=all(idle.locked for idle in waiting))
    return Idle(f"nothing ready in {zone.url}")


def _holds_files(staging: Path) -> bool:
    if not staging.is_dir():
        return False
    found, problems = scan(staging)
    return bool(found or problems)


def _candidates(s3: Any, zone: DropZone) -> list[Entry]:
    """Batches whose clearing was cut short (no `_READY`, a lease) first, then oldest `_READY`."""
    entries = s3_dropzone.list_entries(s3, zone)
    finishing = [e for e in entries if e.leased and e.ready_at is None]
    return finishing + oldest_first(entries)


def _claim_held(me: Claimant, held: Lease) -> ClaimResult:
    """The staging folder holds a claimed batch: the local claim resumes or recovers it."""
    result = me.claim_locally()
    if isinstance(result, Claimed) and result.owner.run_id != held.owner.run_id:
        lease = swap_held(me.s3, me.zone, held, result.owner)
        if lease is None:
            # Another worker took the batch over: it is theirs to finish; ours is dropped here.
            lock.release(me.staging)
            _empty_staging(me.staging)
            return Idle(
                f"batch {result.batch_id} ({me.zone.entry_url(held.name)}) was taken over by "
                "another claimant; this workspace dropped its copy"
            )
        _remember(me.staging, lease)
    elif isinstance(result, Rejected):
        _reject_on_s3(me, held, result)
    elif isinstance(result, Idle) and not result.locked:
        # The batch was released here before the holder died: finish it on S3 too.
        _finish_release(me, held, None)
    return result


def _try_entry(me: Claimant, entry: Entry) -> ClaimResult | None:
    """The claim of one batch of the listing; None when it is not ours to take."""
    lease = _take(me, entry)
    if lease is None or isinstance(lease, Idle):
        return lease
    if entry.ready_at is None:
        log.warning("finishing the release of %s, cut short by its holder", entry.name)
        _finish_release(me, lease, None)
        return None
    _remember(me.staging, lease)
    fresh = replace(entry, keys=tuple(s3_dropzone.entry_keys(me.s3, me.zone, entry.name)))
    unsafe = s3_dropzone.fetch(me.s3, me.zone, fresh, me.staging)
    if unsafe:
        batch_id = read_delivery(me.staging).batch_id
        reasons = [f"{rel}: not a path a batch may hold" for rel in unsafe]
        report = rejection_report(batch_id, reasons, stage="claim")
        where = _finish_release(me, lease, report)
        return Rejected(batch_id, tuple(reasons), Path(where))
    result = me.claim_locally()
    if isinstance(result, Rejected):
        _reject_on_s3(me, lease, result)
    elif isinstance(result, Idle):
        # Not claimable yet (an early `_READY`): hand it back whole; the deadline runs from
        # the S3 `_READY`, whose time the fetched one carries.
        drop_lease(me.s3, me.zone, lease)
        _empty_staging(me.staging)
        return Idle(f"{me.zone.entry_url(entry.name)}: {result.reason}")
    return result


def _take(me: Claimant, entry: Entry) -> Lease | Idle | None:
    """Our lease on `entry` (created or taken over), an Idle saying who holds it, or None."""
    current = read_lease(me.s3, me.zone, entry.name) if entry.leased else None
    holder = current.owner if current else None
    move = next_move(holder, entry.ready_at is not None, me.run_id, me.now, me.params)
    owner = lock.owner_for(me.run_id, me.now, None, me.one_process)
    if move == "create":
        return create_lease(me.s3, me.zone, entry.name, owner)
    if move in ("take-over", "resume") and current is not None:
        taken = swap_lease(me.s3, me.zone, current, owner)
        if taken is not None and holder is not None and move == "take-over":
            log.warning("took over the stale lease of %s from %s", entry.name, holder.describe())
        return taken
    if move == "wait" and holder is not None:
        return Idle(
            f"{me.zone.entry_url(entry.name)} is being processed by {holder.describe()}",
            locked=True,
        )
    return None


def _reject_on_s3(me: Claimant, lease: Lease, result: Rejected) -> None:
    report = read_json_object(result.quarantine / "report.json") or rejection_report(
        result.batch_id, list(result.reasons), stage="claim"
    )
    _finish_release(me, lease, report)


def _finish_release(me: Claimant, lease: Lease, report: dict[str, object] | None) -> str:
    """Clear (or with `report`, quarantine) the batch on S3, drop the lease, empty staging.

    Returns where the batch went: its quarantine URL, or "" when cleared.
    """
    where = ""
    if report is not None:
        batch_id = str(report.get("batch_id") or "unknown")
        where = s3_dropzone.quarantine(me.s3, me.zone, lease.name, batch_id, report)
        log.warning("batch %s quarantined at %s", lease.name, where)
    else:
        s3_dropzone.clear(me.s3, me.zone, lease.name)
    drop_lease(me.s3, me.zone, lease)
    _empty_staging(me.staging)
    return where


def renew(params: IngestParams, owner: LockOwner) -> None:
    """The heartbeat on S3: swap our lease for one stamped by `owner`; LockError once lost."""
    held = read_held(params.incoming_dir)
    if held is None:
        return
    s3, zone = open_zone(params)
    _remember(params.incoming_dir, renew_lease(s3, zone, held, owner))


def release_to_s3(
    params: IngestParams, rejected_report: dict[str, object] | None, owner: LockOwner | None
) -> list[str]:
    """Clear the batch from S3 (quarantine it, when rejected), then from the staging folder."""
    staging = params.incoming_dir
    held = read_held(staging)
    if held is not None:
        s3, zone = open_zone(params)
        lease = held if owner is None else _still_ours(s3, zone, staging, held, owner)
        if lease is not None:
            if rejected_report is None:
                s3_dropzone.clear(s3, zone, held.name)
            else:
                batch_id = str(read_ticket(params).get("batch_id") or "unknown")
                report = rejected_report or rejection_report(batch_id, [], stage="validate")
                s3_dropzone.quarantine(s3, zone, held.name, batch_id, report)
            drop_lease(s3, zone, lease)
    leftovers = release_batch(_local(params), rejected_report, owner)
    with storage_errors(f"could not forget the lease in {staging}"):
        (staging / HELD).unlink(missing_ok=True)
    return leftovers


def _still_ours(
    s3: Any, zone: DropZone, staging: Path, held: Lease, owner: LockOwner
) -> Lease | None:
    """Our lease renewed, or None when the batch is already gone from S3 (released before)."""
    try:
        lease = renew_lease(s3, zone, held, owner)
    except LockError:
        if read_lease(s3, zone, held.name) is None and not s3_dropzone.entry_keys(
            s3, zone, held.name
        ):
            return None
        raise
    # Remembered before anything is cleared: a crash from here on resumes with this ETag.
    _remember(staging, lease)
    return lease
