"""Snapshot the claimed batch into the raw store, and read raw batches back.

In: the claim record (`claimed_batch.json`) and the drop folder. Out: the batch's pack at
`data/raw/batch.tar` and its index records (see `raw_store`): the files are hashed again while
they are packed and must match the claim, so a file rewritten after `_READY` cannot slip in. The
pack is staged beside the store and renamed into place, and the records are written after it, the
id record last, so a crash leaves either no ingested batch or a complete one; a failed copy (a
full disk, a changed file) leaves the previous pack. Raw batches are never changed. Readers get a
batch as a `RawBatch`, its files unpacked into a scratch folder for as long as they need them.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from mainstem.durable import read_json, storage_errors
from mainstem.errors import MainstemError
from mainstem.intake.delivery import DeliveredFile, is_table
from mainstem.intake.dropfolder import claimed_folder, read_ticket, ticket_files
from mainstem.intake.raw_store import (
    BATCH_FILE,
    FILES_DIR,
    RawRecord,
    find_pack,
    last_sequence,
    pack_path,
    record_of,
    records,
    unpacked,
    write_pack,
    write_record,
)
from mainstem.params import IngestParams

log = logging.getLogger(__name__)


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

    def opened(self) -> AbstractContextManager[RawBatch]:
        return nullcontext(self)


@dataclass(frozen=True)
class StoredBatch:
    """An ingested batch as its index record names it; `opened()` unpacks it for a while."""

    record: RawRecord
    raw_dir: Path
    root: Path

    @property
    def batch_id(self) -> str:
        return self.record.batch_id

    def opened(self) -> AbstractContextManager[RawBatch]:
        return open_raw_batch(self.raw_dir, self.root, self.record)


def stored_batches(raw_dir: Path, root: Path, last: int | None = None) -> list[StoredBatch]:
    """Every ingested batch (the `last` newest when given) in sequence order, ready to open."""
    return [StoredBatch(record, raw_dir, root) for record in records(raw_dir, last)]


def read_raw_batch(root: Path) -> RawBatch:
    meta = read_json(root / BATCH_FILE)
    files = tuple(DeliveredFile(f["path"], int(f["size"]), f["sha256"]) for f in meta["files"])
    return RawBatch(meta["batch_id"], int(meta["sequence"]), meta.get("name"), files, root)


def list_raw_batches(raw_dir: Path, last: int | None = None) -> list[RawRecord]:
    """Every ingested batch (only the `last` newest when given), in the order they were ingested."""
    return records(raw_dir, last)


@contextmanager
def open_raw_batch(raw_dir: Path, root: Path, record: RawRecord) -> Iterator[RawBatch]:
    """The batch `record` names, its files unpacked into a scratch folder for the block."""
    pack = find_pack(raw_dir, root, record)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".raw-", suffix=".staging", dir=raw_dir.parent))
    with storage_errors(f"could not unpack raw batch {record.batch_id}"), unpacked(pack, scratch):
        yield read_raw_batch(scratch)


def ingest_claimed(params: IngestParams) -> RawRecord | None:
    """Pack the claimed batch; None when nothing is claimed or it is already in the store."""
    ticket = read_ticket(params)
    batch_id = ticket.get("batch_id")
    if not batch_id:
        log.info("no batch claimed; nothing to ingest")
        return None
    batch_id = str(batch_id)
    if record_of(params.raw_dir, batch_id) is not None:
        log.info("batch %s is already in %s; nothing to ingest", batch_id, params.raw_dir)
        return None
    files = ticket_files(params, ticket)
    folder = claimed_folder(params)
    missing = [f.path for f in files if not (folder / f.path).exists()]
    if missing or not files:
        what = f"missing {missing[0]}" if missing else "no list of its files"
        raise MainstemError(
            f"claimed batch {batch_id} is neither in {params.raw_dir} nor complete in "
            f"{folder} ({what}); run `dvc pull` to fetch raw batches"
        )
    sequence = _next_sequence(params.raw_dir, batch_id)
    name = ticket.get("name")
    name = None if name is None else str(name)
    meta = {"batch_id": batch_id, "sequence": sequence, "name": name}
    with storage_errors(f"could not snapshot batch {batch_id}"):
        md5, sha256, size = write_pack(pack_path(params.raw_dir), meta, folder, files)
        record = RawRecord(batch_id, sequence, name, md5, sha256, size)
        write_record(params.raw_dir, record)
    log.info("ingested batch %s as sequence %d (%d files)", batch_id, sequence, len(files))
    return record


def _next_sequence(raw_dir: Path, batch_id: str) -> int:
    """The next sequence, or the one a crashed run already gave this batch in the index."""
    last = last_sequence(raw_dir)
    previous = records(raw_dir, 1)
    if previous and previous[-1].batch_id == batch_id:
        return last
    return last + 1
