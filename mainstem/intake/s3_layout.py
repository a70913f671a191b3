"""Where a batch lives in the S3 drop zone, and which batches a listing says are waiting.

In: a drop zone URL (`s3://bucket/prefix`), batch names, object keys with their last-modified
times. Out: the keys of a batch's files and control objects, and the batches of a listing, the
claimable ones oldest `_READY` first. Pure: no requests are made here.

The layout mirrors the local queue: one prefix per batch, `<prefix>/<name>/`, holding the
producer's files, an optional `_MANIFEST.json`, `_READY` (written last) and, once claimed,
`_PROCESSING` (the lease). Rejected batches move to `<prefix>/_quarantine/<batch id>/`. Names that
start with `_` or `.` are the drop zone's own, never a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mainstem.errors import ParamsError
from mainstem.intake.delivery import MANIFEST, PROCESSING, READY

SCHEME = "s3://"
QUARANTINE = "_quarantine"
REPORT = "report.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_s3_url(text: str) -> bool:
    return text.startswith(SCHEME)


@dataclass(frozen=True)
class DropZone:
    """A bucket and a key prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def entry_prefix(self, name: str) -> str:
        """The prefix every object of batch `name` starts with, slash included."""
        return self._key(name) + "/"

    def file_key(self, name: str, rel: str) -> str:
        return self._key(name, rel)

    def ready_key(self, name: str) -> str:
        return self._key(name, READY)

    def lease_key(self, name: str) -> str:
        return self._key(name, PROCESSING)

    def manifest_key(self, name: str) -> str:
        return self._key(name, MANIFEST)

    def quarantine_prefix(self, batch_id: str) -> str:
        return self._key(QUARANTINE, batch_id) + "/"

    def list_prefix(self) -> str:
        return self._key() + "/" if self.prefix else ""

    def entry_url(self, name: str) -> str:
        return f"{SCHEME}{self.bucket}/{self.entry_prefix(name)}"


def parse_drop_zone(url: str) -> DropZone:
    """`s3://bucket/prefix` as a DropZone; a ParamsError saying what to fix when malformed."""
    if not is_s3_url(url):
        raise ParamsError(f"drop zone {url!r} must start with {SCHEME}")
    bucket, _slash, prefix = url[len(SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ParamsError(
            f"drop zone {url!r}: {bucket!r} is not a bucket name (3-63 lower-case letters, "
            "digits, dots and dashes)"
        )
    prefix = prefix.strip("/")
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ParamsError(f"drop zone {url!r}: the prefix has an empty, '.' or '..' part")
    return DropZone(bucket, prefix)


def check_batch_name(name: str) -> str:
    """`name` if it can be a batch's prefix; a ParamsError saying what to change otherwise."""
    if not _NAME.fullmatch(name):
        raise ParamsError(
            f"batch name {name!r} cannot name a prefix in the drop zone: use letters, digits, "
            "'.', '_', '=', '+' and '-', starting with a letter or digit (at most 200)"
        )
    return name


@dataclass(frozen=True)
class Listed:
    key: str
    modified: float  # seconds since the epoch, as the store stamped the object


@dataclass(frozen=True)
class Entry:
    """A batch prefix as a listing saw it."""

    name: str
    ready_at: float | None  # when `_READY` was written; None while the producer is still at it
    leased: bool  # a `_PROCESSING` lease is there: claimed, maybe by a run that died
    keys: tuple[str, ...]  # every object of the batch, control objects included

    @property
    def claimable(self) -> bool:
        return self.ready_at is not None and not self.leased


def entries_of(zone: DropZone, listing: Iterable[Listed]) -> list[Entry]:
    """The batches in a listing of the zone's prefix, by name; quarantine and strays left out."""
    base = zone.list_prefix()
    grouped: dict[str, list[Listed]] = {}
    for item in listing:
        if not item.key.startswith(base):
            continue
        name, slash, rest = item.key[len(base) :].partition("/")
        if not slash or not rest or not _NAME.fullmatch(name):
            continue
        grouped.setdefault(name, []).append(item)
    entries = []
    for name, items in sorted(grouped.items()):
        by_key = {i.key: i for i in items}
        ready = by_key.get(zone.ready_key(name))
        entries.append(
            Entry(
                name,
                ready.modified if ready else None,
                zone.lease_key(name) in by_key,
                tuple(sorted(by_key)),
            )
        )
    return entries


def oldest_first(entries: Iterable[Entry]) -> list[Entry]:
    """The entries with a `_READY`, oldest `_READY` first (ties by name), leased ones included."""
    ready = [e for e in entries if e.ready_at is not None]
    return sorted(ready, key=lambda e: (e.ready_at, e.name))


def payload_of(zone: DropZone, name: str, keys: Iterable[str]) -> list[str]:
    """The paths, relative to the batch, of its files and manifest: what a claim fetches."""
    base = zone.entry_prefix(name)
    control = {zone.ready_key(name), zone.lease_key(name)}
    return sorted(k[len(base) :] for k in keys if k.startswith(base) and k not in control)
