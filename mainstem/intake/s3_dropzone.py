"""The S3 drop zone's objects: deliver a batch, list the queue, fetch, clear, quarantine.

In: an S3 client, the drop zone (`s3_layout.DropZone`), batch names, local files. Out:
- `deliver`: a producer's batch, `_MANIFEST.json` first (it takes the name), then the files,
  then `_READY` last, every object written with `If-None-Match: *` (a re-run of the same
  delivery finds its own objects and carries on; another batch under the name is refused);
- `list_entries`: the batches under the prefix, as `s3_layout.entries_of` reads the listing;
- `fetch`: a claimed batch's files and manifest copied into an empty local folder, then a local
  `_READY` stamped with the time of the S3 one, so the local claim (ids by content hash, the
  duplicate and the manifest checks, the manifest deadline) runs on it unchanged;
- `clear` and `quarantine`: the batch's objects removed, or copied to
  `_quarantine/<batch id>/` with a report and then removed. `_READY` goes first once every copy
  is made, so a batch without `_READY` but with a lease is one whose clearing was cut short:
  whoever holds or recovers the lease finishes it. Every step can be repeated.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from mainstem import crashpoints
from mainstem.durable import canonical_json, fsync_dir, storage_errors, write_bytes
from mainstem.errors import DropZoneError
from mainstem.intake.delivery import MANIFEST, READY
from mainstem.intake.s3_client import S3Answer, retried
from mainstem.intake.s3_layout import REPORT, DropZone, Entry, Listed, entries_of, payload_of

_SHA = "sha256"


def _put_once(s3: Any, zone: DropZone, key: str, body: Any, sha: str) -> bool:
    """Write `key` if absent; True if written, False if it already holds these bytes."""
    try:
        retried(
            lambda: s3.put_object(
                Bucket=zone.bucket, Key=key, Body=body, IfNoneMatch="*", Metadata={_SHA: sha}
            ),
            f"deliver {key}",
            zone.url,
        )
        return True
    except S3Answer as answer:
        if answer.outcome != "lost":
            raise
    head = retried(lambda: s3.head_object(Bucket=zone.bucket, Key=key), f"check {key}", zone.url)
    if head.get("Metadata", {}).get(_SHA) != sha:
        raise DropZoneError(
            f"s3://{zone.bucket}/{key} already holds other bytes: another batch uses this "
            "name; deliver under another --name"
        ) from None
    return False


def deliver(
    s3: Any, zone: DropZone, name: str, uploads: list[tuple[Path, str, str]], manifest: bytes
) -> bool:
    """Deliver batch `name`: its manifest, the files `uploads` (file, path in the batch,
    sha256), then `_READY`; False when this exact delivery was already complete.

    The manifest goes first, with `If-None-Match: *`, so it takes the name: a producer whose
    batch differs from the one under the name is refused before it writes a single file. A claim
    ignores a batch until its `_READY` is there.
    """
    _put_once(s3, zone, zone.manifest_key(name), manifest, hashlib.sha256(manifest).hexdigest())
    for source, rel, sha in uploads:
        with open(source, "rb") as body:
            _put_once(s3, zone, zone.file_key(name, rel), body, sha)
    return _put_once(s3, zone, zone.ready_key(name), b"", hashlib.sha256(b"").hexdigest())


def list_entries(s3: Any, zone: DropZone) -> list[Entry]:
    """Every batch under the zone's prefix, by name (one paginated listing)."""
    listing: list[Listed] = []

    def page_through() -> None:
        listing.clear()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=zone.bucket, Prefix=zone.list_prefix()
        )
        for page in pages:
            listing.extend(
                Listed(item["Key"], item["LastModified"].timestamp())
                for item in page.get("Contents", [])
            )

    retried(page_through, "list the drop zone", zone.url)
    return entries_of(zone, listing)


def entry_keys(s3: Any, zone: DropZone, name: str) -> list[str]:
    """Every object key of batch `name` now."""
    keys: list[str] = []

    def page_through() -> None:
        keys.clear()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=zone.bucket, Prefix=zone.entry_prefix(name)
        )
        for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []))

    retried(page_through, f"list batch {name}", zone.url)
    return sorted(keys)


def safe_relative(rel: str) -> bool:
    """Whether an object's path inside its batch can be written under a local folder as is."""
    # Split by hand: PurePosixPath would fold `a//b` and `./a` into names other keys may hold.
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def fetch(s3: Any, zone: DropZone, entry: Entry, target: Path) -> list[str]:
    """Copy the batch's files and manifest into the empty folder `target`, then `_READY`.

    The paths that cannot be written locally (`..` parts and the like) are returned, not
    fetched: the claim rejects the batch for them.
    """
    unsafe = []
    with storage_errors(f"could not fetch {zone.entry_url(entry.name)} into {target}"):
        target.mkdir(parents=True, exist_ok=True)
        folders = {target}
        for rel in payload_of(zone, entry.name, entry.keys):
            if not safe_relative(rel):
                unsafe.append(rel)
                continue
            local = target / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            folders.add(local.parent)
            key = zone.file_key(entry.name, rel)
            crashpoints.reach("s3 fetch object")
            download = partial(s3.download_file, zone.bucket, key, str(local))
            retried(download, f"fetch {key}", zone.url)
        for folder in folders:
            fsync_dir(folder)
        write_bytes(target / READY, b"")
        ready_at = entry.ready_at if entry.ready_at is not None else 0.0
        os.utime(target / READY, (ready_at, ready_at))
    return unsafe


def _delete(s3: Any, zone: DropZone, keys: Iterable[str]) -> None:
    for key in keys:
        crashpoints.reach("s3 delete object")
        retried(partial(s3.delete_object, Bucket=zone.bucket, Key=key), f"remove {key}", zone.url)


def clear(s3: Any, zone: DropZone, name: str) -> None:
    """Remove batch `name`'s objects, `_READY` first, all but the lease."""
    _delete(s3, zone, [zone.ready_key(name)])
    keys = entry_keys(s3, zone, name)
    _delete(s3, zone, [k for k in keys if k not in (zone.lease_key(name), zone.ready_key(name))])


def quarantine(s3: Any, zone: DropZone, name: str, batch_id: str, report: dict[str, Any]) -> str:
    """Copy batch `name` to `_quarantine/<batch_id>/` with `report`, then clear it; its URL.

    Copies of objects already moved by an interrupted earlier attempt are skipped; a batch with
    no objects left is not quarantined again.
    """
    destination = zone.quarantine_prefix(batch_id)
    keys = entry_keys(s3, zone, name)
    if not keys:  # moved already, or released: nothing to put in quarantine
        return f"s3://{zone.bucket}/{destination}"
    body = canonical_json(report)
    retried(
        lambda: s3.put_object(Bucket=zone.bucket, Key=destination + REPORT, Body=body),
        f"write the report of {name}",
        zone.url,
    )
    for rel in payload_of(zone, name, keys):
        source = zone.file_key(name, rel)
        copy = destination + (MANIFEST if rel == MANIFEST else f"files/{rel}")
        crashpoints.reach("s3 quarantine copy")
        try:
            retried(
                partial(
                    s3.copy_object,
                    Bucket=zone.bucket,
                    Key=copy,
                    CopySource={"Bucket": zone.bucket, "Key": source},
                ),
                f"quarantine {source}",
                zone.url,
            )
        except S3Answer as answer:
            if answer.outcome != "missing":
                raise
    clear(s3, zone, name)
    return f"s3://{zone.bucket}/{destination}"
