"""Snapshot the claimed batch into the raw store.

In: the claim record (`claimed_batch.json`) and the drop folder. Out: `data/raw/<batch_id>/` with
`files/` (byte copies of the delivery) and `batch.json` (the content hashes, the batch's sequence
number and its name). Each file is hashed while it is copied and must match the claim, so a file
rewritten after `_READY` cannot slip in. The snapshot is staged beside the raw store and renamed
into place, so a crash leaves either no snapshot or a complete one; a failed copy (a full disk, a
changed file) removes its staging folder. Raw batches are never changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mainstem import crashpoints
from mainstem.durable import fresh_dir, publish_dir, read_json, staging_path, storage_errors
from mainstem.durable import write_json as write_json_durable
from mainstem.errors import BatchChangedError, MainstemError
from mainstem.intake.delivery import DeliveredFile, is_table, open_regular
from mainstem.intake.dropfolder import read_ticket, ticket_files
from mainstem.params import IngestParams

log = logging.getLogger(__name__)
BATCH_FILE = "batch.json"
FILES_DIR = "files"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawBatch:
    batch_id: str
    sequence: int
    name: str | None
    files: tuple[DeliveredFile, ...]
    root: Path

    @property
    def tables(self) -> tuple[DeliveredFile, ...]:
        return tuple(f for f in self.files if is_table(f.path))

    def file_path(self, rel: str) -> Path:
        return self.root / FILES_DIR / rel


def read_raw_batch(root: Path) -> RawBatch:
    meta = read_json(root / BATCH_FILE)
    files = tuple(DeliveredFile(f["path"], int(f["size"]), f["sha256"]) for f in meta["files"])
    return RawBatch(meta["batch_id"], int(meta["sequence"]), meta.get("name"), files, root)


def list_raw_batches(raw_dir: Path) -> list[RawBatch]:
    """Every complete raw batch, in the order they were ingested."""
    if not raw_dir.is_dir():
        return []
    batches = [
        read_raw_batch(child)
        for child in raw_dir.iterdir()
        if child.is_dir() and (child / BATCH_FILE).exists()
    ]
    return sorted(batches, key=lambda b: b.sequence)


def copy_verified(source: Path, target: Path, expected: DeliveredFile) -> None:
    """Copy `source` to `target`, failing if its bytes are not the ones the claim recorded."""
    digest = hashlib.sha256()
    size = 0
    fd = open_regular(source)
    with os.fdopen(fd, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    if (size, digest.hexdigest()) != (expected.size, expected.sha256):
        raise BatchChangedError(
            f"{expected.path} changed after the batch was claimed "
            f"(now {size} bytes, claimed {expected.size}); the producer must finish writing "
            "before it writes _READY. The batch stays claimed; fix the file and re-claim."
        )


def ingest_claimed(params: IngestParams) -> RawBatch | None:
    """Snapshot the claimed batch; None when nothing is claimed or it is already in the store."""
    ticket = read_ticket(params)
    batch_id = ticket.get("batch_id")
    if not batch_id:
        log.info("no batch claimed; nothing to ingest")
        return None
    batch_id = str(batch_id)
    target = params.raw_dir / batch_id
    if (target / BATCH_FILE).exists():
        log.info("batch %s is already in %s; nothing to ingest", batch_id, params.raw_dir)
        return None
    files = ticket_files(params, ticket)
    missing = [f.path for f in files if not (params.incoming_dir / f.path).exists()]
    if missing or not files:
        what = f"missing {missing[0]}" if missing else "no list of its files"
        raise MainstemError(
            f"claimed batch {batch_id} is neither in {params.raw_dir} nor complete in "
            f"{params.incoming_dir} ({what}); run `dvc pull` to fetch raw batches"
        )
    existing = list_raw_batches(params.raw_dir)
    sequence = existing[-1].sequence + 1 if existing else 1
    staged = fresh_dir(staging_path(params.raw_dir, f"ingest-{batch_id}"))
    try:
        with storage_errors(f"could not snapshot batch {batch_id}"):
            for item in files:
                destination = staged / FILES_DIR / item.path
                destination.parent.mkdir(parents=True, exist_ok=True)
                crashpoints.reach("ingest copy")
                copy_verified(params.incoming_dir / item.path, destination, item)
            write_json_durable(
                staged / BATCH_FILE,
                {
                    "batch_id": batch_id,
                    "sequence": sequence,
                    "name": ticket.get("name"),
                    "files": [f.to_json() for f in files],
                },
            )
            publish_dir(staged, target)
    except Exception:
        # A full disk or a changed file: leave no half-copied snapshot taking up room.
        shutil.rmtree(staged, ignore_errors=True)
        raise
    log.info("ingested batch %s as sequence %d (%d files)", batch_id, sequence, len(files))
    return read_raw_batch(target)
