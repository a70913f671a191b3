"""The `_PROCESSING` lease of a batch in the S3 drop zone, kept with S3 conditional writes.

In: an S3 client, the drop zone, a batch name, lock owner records (`lock.LockOwner`, the same
record the local lock holds) and the clock. Out: a Lease (its owner and the ETag S3 gave the
object we wrote), or None when another claimant won. The conditions do all the work, so no two
claimants ever both hold a batch:
- create: `PUT _PROCESSING` with `If-None-Match: *`; one claimant gets 200, the others 412;
- heartbeat and takeover: `PUT _PROCESSING` with `If-Match: <ETag>`, a compare-and-swap: a 412
  (or 404) means someone else renewed, took over or released it since, and the caller stops;
- release: `DELETE _PROCESSING` with `If-Match: <ETag>`.
A 409 (a concurrent conditional write in flight) is retried. Each lease body names its run and
heartbeat time, so two writes never share an ETag. Whether a lease may be taken over is decided
exactly as for the local lock (`lock.state_of`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mainstem import crashpoints
from mainstem.errors import LockError
from mainstem.intake import lock
from mainstem.intake.lock import LockOwner
from mainstem.intake.s3_client import S3Answer, retried
from mainstem.intake.s3_layout import DropZone
from mainstem.params import IngestParams

Move = Literal["create", "resume", "take-over", "wait", "skip"]


@dataclass(frozen=True)
class Lease:
    name: str
    owner: LockOwner
    etag: str


def encode(owner: LockOwner) -> bytes:
    return json.dumps(asdict(owner), sort_keys=True).encode()


def decode(body: bytes, modified: float) -> LockOwner:
    """The owner a lease body names; an unreadable body reads as an unknown owner."""
    try:
        return LockOwner(**json.loads(body))
    except (ValueError, TypeError):
        return LockOwner("unknown", "unknown", 0, 0.0, modified, modified)


def next_move(
    holder: LockOwner | None, ready: bool, run_id: str, now: float, params: IngestParams
) -> Move:
    """What run `run_id` does with one batch of the listing, given its lease holder if any.

    Staleness is the local lock's: `ingest.stale_lock_seconds` of silence, or at once for a
    holder on this host whose process is gone (`lock.state_of`).
    """
    if holder is None:
        return "create" if ready else "skip"
    state = lock.state_of(
        holder, run_id, now, params.stale_lock_seconds, params.dead_owner_grace_seconds
    )
    moves: dict[str, Move] = {"mine": "resume", "stale": "take-over", "live": "wait"}
    return moves[state]


def read_lease(s3: Any, zone: DropZone, name: str) -> Lease | None:
    """The batch's lease as it stands, None when there is none."""
    key = zone.lease_key(name)
    try:
        answer = retried(
            lambda: s3.get_object(Bucket=zone.bucket, Key=key), "read a lease", zone.url
        )
    except S3Answer as missing:
        if missing.outcome == "missing":
            return None
        raise
    body = answer["Body"].read()
    owner = decode(body, answer["LastModified"].timestamp())
    return Lease(name, owner, answer["ETag"])


def _put(s3: Any, zone: DropZone, name: str, owner: LockOwner, condition: dict[str, str]) -> str:
    key = zone.lease_key(name)
    crashpoints.reach("s3 write lease")
    answer = retried(
        lambda: s3.put_object(Bucket=zone.bucket, Key=key, Body=encode(owner), **condition),
        f"write the lease of {name}",
        zone.url,
    )
    return str(answer["ETag"])


def create_lease(s3: Any, zone: DropZone, name: str, owner: LockOwner) -> Lease | None:
    """Claim batch `name` for `owner`: the lease if this call created it, None if another did."""
    try:
        return Lease(name, owner, _put(s3, zone, name, owner, {"IfNoneMatch": "*"}))
    except S3Answer as answer:
        if answer.outcome == "lost":
            return None
        raise


def swap_lease(s3: Any, zone: DropZone, current: Lease, owner: LockOwner) -> Lease | None:
    """Replace `current` by a lease for `owner` if nobody changed it since; else None."""
    try:
        etag = _put(s3, zone, current.name, owner, {"IfMatch": current.etag})
        return Lease(current.name, owner, etag)
    except S3Answer as answer:
        if answer.outcome in ("lost", "missing"):
            return None
        raise


def _same_claim(a: LockOwner, b: LockOwner) -> bool:
    return a.run_id == b.run_id and a.claimed_at == b.claimed_at


def swap_held(s3: Any, zone: DropZone, held: Lease, owner: LockOwner) -> Lease | None:
    """`swap_lease` from the lease we last recorded, or from a later one our own claim wrote.

    A process that died between a lease write and recording its ETag leaves a lease that is
    still this claim's (same run, same claim time) under an ETag nobody recorded: it is ours.
    """
    swapped = swap_lease(s3, zone, held, owner)
    if swapped is not None:
        return swapped
    current = read_lease(s3, zone, held.name)
    if current is None or not _same_claim(current.owner, held.owner):
        return None
    return swap_lease(s3, zone, current, owner)


def renew_lease(s3: Any, zone: DropZone, lease: Lease, owner: LockOwner) -> Lease:
    """The heartbeat: re-stamp our lease; a LockError when it is ours no more (stop writing)."""
    renewed = swap_held(s3, zone, lease, owner)
    if renewed is None:
        holder = read_lease(s3, zone, lease.name)
        held_by = holder.owner.describe() if holder else "nobody"
        raise LockError(
            f"run {lease.owner.run_id} lost the lease of {zone.entry_url(lease.name)} (now held "
            f"by {held_by}); it stops here and leaves the batch to the current holder"
        )
    return renewed


def drop_lease(s3: Any, zone: DropZone, lease: Lease) -> None:
    """Delete our lease; gone already is fine, someone else's is a LockError and stays."""
    key = zone.lease_key(lease.name)
    crashpoints.reach("s3 release lease")
    try:
        retried(
            lambda: s3.delete_object(Bucket=zone.bucket, Key=key, IfMatch=lease.etag),
            f"release the lease of {lease.name}",
            zone.url,
        )
    except S3Answer as answer:
        if answer.outcome == "missing":
            return
        holder = read_lease(s3, zone, lease.name)
        if holder is None:
            return
        raise LockError(
            f"run {lease.owner.run_id} did not release {zone.entry_url(lease.name)}: "
            f"{holder.owner.describe()} holds it now"
        ) from answer
