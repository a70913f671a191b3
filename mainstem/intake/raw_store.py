"""The raw store: one packed snapshot per batch, and an index of every batch ever ingested.

In: the claimed batch's files (hashed again while packed) or a pack to read. Out, under
`ingest.raw_dir` (`data/raw/`):
- `batch.tar`, the DVC output of the ingest stage: the pack of the batch being processed, and only
  that one. A pack is an uncompressed tar with `batch.json` (batch id, sequence, name, the
  per-file list) then `files/<path>` in path order, every header fixed (mtime 0, owner 0, mode
  0644), so the same batch always gives the same bytes and the same DVC hash;
- `index/`: one small git-tracked record per batch (id, sequence, name, the pack's md5, sha256
  and size), in segment files of 256 batches and found by id through 256 shard files
  (`record_index`).
Every batch adds one pack and two index lines: git tracks one file per 256 batches, not two per
batch, and a write rewrites one segment and one shard. DVC's cache keeps each pack under its
md5, and each lineage commit's `dvc.lock` pins the pack it processed, so an old pack is read
from the DVC cache by the md5 its record names (`mainstem upgrade --fetch-raw` brings back what
the cache lacks). docs/storage.md says why.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mainstem import crashpoints
from mainstem.durable import (
    canonical_json,
    fresh_dir,
    fsync_dir,
    make_dirs,
    write_bytes,
)
from mainstem.errors import BatchChangedError, RawBatchDroppedError, RawBatchMissingError
from mainstem.intake.delivery import DeliveredFile, open_regular
from mainstem.intake.raw_tombstones import Tombstone, tombstone_of, tombstone_path
from mainstem.intake.record_index import RecordIndex

PACK = "batch.tar"
INDEX = "index"
BATCH_FILE = "batch.json"
FILES_DIR = "files"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawRecord:
    """One ingested batch as the index records it; its files are in the pack `md5` names."""

    batch_id: str
    sequence: int
    name: str | None
    md5: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "sequence": self.sequence,
            "name": self.name,
            "pack_md5": self.md5,
            "pack_sha256": self.sha256,
            "pack_size": self.size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RawRecord:
        return cls(
            str(data["batch_id"]),
            int(data["sequence"]),
            data.get("name"),
            str(data["pack_md5"]),
            str(data["pack_sha256"]),
            int(data["pack_size"]),
        )


def pack_path(raw_dir: Path) -> Path:
    return raw_dir / PACK


RAW_SEGMENT = 256  # raw records are small: a segment stays under 100 KB


def raw_index(raw_dir: Path) -> RecordIndex:
    return RecordIndex(raw_dir / INDEX, RAW_SEGMENT)


def record_of(raw_dir: Path, batch_id: str) -> RawRecord | None:
    """The index record of batch `batch_id`; None when it was never ingested."""
    if not batch_id or "/" in batch_id or batch_id.startswith("."):
        return None
    data = raw_index(raw_dir).of(batch_id)
    return RawRecord.from_json(data) if data else None


def last_sequence(raw_dir: Path) -> int:
    """The highest sequence in the index, 0 when it is empty; reads the newest segment."""
    return raw_index(raw_dir).last()


def records(raw_dir: Path, last: int | None = None) -> list[RawRecord]:
    """The index in sequence order; only the `last` newest records when given."""
    index = raw_index(raw_dir)
    top = index.last()
    first = 1 if last is None else max(1, top - last + 1)
    return [RawRecord.from_json(data) for data in index.between(first, top)]


def write_records(raw_dir: Path, found: list[RawRecord], durable: bool = True) -> None:
    """Record batches: by sequence first, then by id, the line that makes each count as ingested."""
    crashpoints.reach("ingest index")
    raw_index(raw_dir).put([record.to_json() for record in found], durable)


def write_record(raw_dir: Path, record: RawRecord) -> None:
    write_records(raw_dir, [record])


def pack_header(name: str, size: int) -> tarfile.TarInfo:
    """A tar header that depends on the name and size alone: no time, owner or mode of the file."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _VerifiedReader(io.RawIOBase):
    """Reads a delivered file for the pack, hashing every byte it hands over."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


def _changed(expected: DeliveredFile, size: int) -> BatchChangedError:
    return BatchChangedError(
        f"{expected.path} changed after the batch was claimed "
        f"(now {size} bytes, claimed {expected.size}); the producer must finish writing "
        "before it writes _READY. The batch stays claimed; fix the file and re-claim."
    )


def _add_verified(pack: tarfile.TarFile, source: Path, expected: DeliveredFile) -> None:
    """Append `source` to `pack`, failing if its bytes are not the ones the claim recorded."""
    with os.fdopen(open_regular(source), "rb") as handle:
        reader = _VerifiedReader(handle)
        try:
            pack.addfile(pack_header(f"{FILES_DIR}/{expected.path}", expected.size), reader)
        except OSError as error:
            if "unexpected end of data" not in str(error):
                raise
            raise _changed(expected, reader.size) from None
        extra = len(handle.read(_CHUNK))
    if extra or (reader.size, reader.digest.hexdigest()) != (expected.size, expected.sha256):
        raise _changed(expected, reader.size + extra)


def write_pack(
    target: Path, meta: dict[str, Any], incoming_dir: Path, files: list[DeliveredFile]
) -> tuple[str, str, int]:
    """Pack `files` from `incoming_dir` with `meta` at `target`; its md5, sha256 and size.

    The pack is written beside `target`, fsynced, then renamed over it; a crash leaves the old
    pack or the new one. A file whose bytes differ from the claim fails the pack and leaves
    `target` as it was.
    """
    staged = target.with_name(f".{target.name}.pack.staging")
    make_dirs(target.parent)
    try:
        with open(staged, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as pack:
                files = sorted(files, key=lambda f: f.path)
                listing = canonical_json({**meta, "files": [f.to_json() for f in files]})
                pack.addfile(pack_header(BATCH_FILE, len(listing)), io.BytesIO(listing))
                for item in files:
                    crashpoints.reach("ingest copy")
                    _add_verified(pack, incoming_dir / item.path, item)
            handle.flush()
            os.fsync(handle.fileno())
        md5, sha256, size = _digests(staged)
        crashpoints.reach("publish pack")
        os.replace(staged, target)
        fsync_dir(target.parent)
    finally:
        staged.unlink(missing_ok=True)
    return md5, sha256, size


def pack_bytes(meta: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """The pack `write_pack` writes for these files, built in memory (no claim to check)."""
    listed = [
        DeliveredFile(path, len(data), hashlib.sha256(data).hexdigest())
        for path, data in sorted(files.items())
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as pack:
        listing = canonical_json({**meta, "files": [f.to_json() for f in listed]})
        pack.addfile(pack_header(BATCH_FILE, len(listing)), io.BytesIO(listing))
        for item in listed:
            header = pack_header(f"{FILES_DIR}/{item.path}", item.size)
            pack.addfile(header, io.BytesIO(files[item.path]))
    return buffer.getvalue()


def ensure_pack(raw_dir: Path) -> None:
    """Give DVC its output before the first batch: an empty pack (a tar with no member)."""
    target = pack_path(raw_dir)
    if not target.exists():
        buffer = io.BytesIO()
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT).close()
        write_bytes(target, buffer.getvalue())


def _digests(path: Path) -> tuple[str, str, int]:
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), sha256.hexdigest(), size


def pack_meta(pack: Path) -> dict[str, Any] | None:
    """The `batch.json` of a pack; None when there is no readable pack."""
    try:
        with tarfile.open(pack, mode="r:") as archive:
            member = archive.extractfile(BATCH_FILE)
            return json.loads(member.read()) if member is not None else None
    except (OSError, tarfile.TarError, KeyError, ValueError):
        return None


def dvc_cache_dir(root: Path) -> Path:
    """The DVC cache of the repository at `root`: `cache.dir` from its config, else `.dvc/cache`."""
    cache = root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        config = configparser.ConfigParser()
        config.read(root / ".dvc" / name)
        if config.has_option("cache", "dir"):
            cache = (root / ".dvc" / config.get("cache", "dir")).resolve()
    return cache


def cached_pack(root: Path, md5: str) -> Path:
    """Where DVC's cache keeps the object with this md5."""
    return dvc_cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]


def dropped_error(raw_dir: Path, dropped: Tombstone) -> RawBatchDroppedError:
    """The one line a reader of a pack that retention dropped stops with."""
    name = f" ({dropped.name})" if dropped.name else ""
    record = tombstone_path(raw_dir, dropped.batch_id)
    return RawBatchDroppedError(
        f"raw batch {dropped.batch_id}{name}, sequence {dropped.sequence}, was dropped by "
        f"retention (`mainstem gc --keep-raw`; `git log -- {record}` says when): its pack "
        f"(md5 {dropped.md5}) is gone from the DVC cache and remote, so it cannot be read again. "
        "`mainstem contract check --batches K` with a K that reaches only kept batches works; "
        "re-validating every batch (a new contract or validation code) needs the pack back in the "
        "DVC cache from a backup of your own, or keep the contract and code in force"
    )


def find_pack(raw_dir: Path, root: Path, record: RawRecord) -> Path:
    """The pack of `record`: the current one when it is that batch's, else DVC's cached copy.

    A pack retention dropped is refused even while a copy lingers (a gc cut short between its
    commit and its deletions): lineage says it is gone, so no reader may depend on it.
    """
    current = pack_path(raw_dir)
    if (pack_meta(current) or {}).get("batch_id") == record.batch_id:
        return current
    dropped = tombstone_of(raw_dir, record.batch_id)
    if dropped is not None:
        raise dropped_error(raw_dir, dropped)
    cached = cached_pack(root, record.md5)
    if cached.is_file():
        return cached
    raise RawBatchMissingError(
        f"raw batch {record.batch_id} (sequence {record.sequence}, pack md5 {record.md5}) is "
        f"neither {current} nor in the DVC cache; run `mainstem upgrade --fetch-raw` to fetch "
        "the raw packs the index names from the DVC remote, then run again"
    )


@contextmanager
def unpacked(pack: Path, scratch: Path) -> Iterator[Path]:
    """The pack's `batch.json` and `files/` under `scratch`, removed when the block ends."""
    fresh_dir(scratch)
    try:
        with tarfile.open(pack, mode="r:") as archive:
            archive.extractall(scratch, filter="data")
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
