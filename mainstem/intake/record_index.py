"""A batch index kept in few files: records by sequence in segments, batch ids in fixed shards.

In: an index folder (`data/raw/index`, `data/validated/index`) and records (JSON objects with a
`batch_id` and a `sequence`). Out, under the folder:
- `seq/<segment>.jsonl`: the records of `per_segment` consecutive sequences (segment =
  sequence // per_segment, 8 digits), one line each in sequence order;
- `id/<ab>.jsonl`: for every batch id whose sha256 begins with the hex digits `ab`, one line
  naming its sequence, in id order: 256 files at most, however long the history.
A line is canonical JSON (sorted keys, no spaces), so the same records give the same bytes
whatever order they were written in. A write rewrites whole files atomically (`durable`), the
segment and the id shard in the order the store chooses; the one written last makes a batch
count, so a crash leaves the batch either indexed or not. Git tracks one file per segment and
per shard, not two per batch: its index, which `git status` and DVC's output checks read whole,
grows by one entry per `per_segment` batches. A write costs one segment (at most `per_segment`
records) and one shard (the ids of about 1/256 of the history).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mainstem.durable import write_bytes
from mainstem.errors import IndexLayoutError, StorageError

SEQ, ID = "seq", "id"
SUFFIX = ".jsonl"


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects in `path`, one per line; [] when it is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise _damaged(path, 0, str(error)) from None
    rows = []
    for number, row in enumerate(text.splitlines(), 1):
        if not row.strip():
            continue
        try:
            value = json.loads(row)
        except ValueError as error:
            raise _damaged(path, number, str(error)) from None
        if not isinstance(value, dict):
            raise _damaged(path, number, "not a JSON object")
        rows.append(value)
    return rows


def _damaged(path: Path, number: int, why: str) -> StorageError:
    where = f"{path}, line {number}" if number else str(path)
    return StorageError(
        f"{where} is no index record ({why}); the file is git-tracked: `git checkout -- {path}` "
        "restores the last committed one, then run again"
    )


def write_lines(path: Path, rows: Iterable[dict[str, Any]], durable: bool = True) -> None:
    data = b"".join(line(row) + b"\n" for row in rows)
    if durable:
        write_bytes(path, data)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def shard_name(key: str) -> str:
    """The shard file of a key: two hex digits of its sha256, so any id spreads evenly."""
    return hashlib.sha256(key.encode()).hexdigest()[:2] + SUFFIX


def put_keyed(
    folder: Path, rows: Iterable[dict[str, Any]], key: str = "batch_id", durable: bool = True
) -> list[Path]:
    """Add or replace `rows` in the shards of `folder` by `row[key]`; the shard files written."""
    by_shard: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_shard[shard_name(str(row[key]))].append(row)
    written = []
    for name, new in sorted(by_shard.items()):
        path = folder / name
        kept = {str(row[key]): row for row in read_lines(path)}
        kept.update((str(row[key]), row) for row in new)
        write_lines(path, (kept[k] for k in sorted(kept)), durable)
        written.append(path)
    return written


def get_keyed(folder: Path, value: str, key: str = "batch_id") -> dict[str, Any] | None:
    rows = read_lines(folder / shard_name(value))
    return next((row for row in rows if row.get(key) == value), None)


class RecordIndex:
    """The records of one store's batches, by sequence and by batch id."""

    def __init__(self, folder: Path, per_segment: int, ids_first: bool = False) -> None:
        self.folder = folder
        self.per_segment = per_segment
        self.ids_first = ids_first

    def segment_path(self, sequence: int) -> Path:
        return self.folder / SEQ / f"{sequence // self.per_segment:08d}{SUFFIX}"

    def _rows(self, path: Path) -> list[dict[str, Any]]:
        """A segment's records, each checked to name a batch and a sequence."""
        rows = read_lines(path)
        for number, row in enumerate(rows, 1):
            if not isinstance(row.get("batch_id"), str) or not isinstance(row.get("sequence"), int):
                raise _damaged(path, number, "no batch_id and sequence")
        return rows

    def at(self, sequence: int) -> dict[str, Any] | None:
        if sequence <= 0:
            return None
        rows = self._rows(self.segment_path(sequence))
        return next((row for row in rows if row["sequence"] == sequence), None)

    def sequence_of(self, batch_id: str) -> int | None:
        found = get_keyed(self.folder / ID, batch_id)
        sequence = found.get("sequence") if found else None
        return sequence if isinstance(sequence, int) else None

    def of(self, batch_id: str) -> dict[str, Any] | None:
        """The record of `batch_id`; None until both its id line and its segment line exist."""
        sequence = self.sequence_of(batch_id)
        record = self.at(sequence) if sequence else None
        return record if record and record.get("batch_id") == batch_id else None

    def _segments(self) -> list[str]:
        try:
            names = os.listdir(self.folder / SEQ)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if n.endswith(SUFFIX) and n[: -len(SUFFIX)].isdigit())

    def last(self) -> int:
        """The highest sequence with a record, 0 when none: reads the newest segment only.

        An index of the layout before segments is refused, never read as empty: its batches'
        sequences would be given again.
        """
        segments = self._segments()
        for name in reversed(segments):
            rows = self._rows(self.folder / SEQ / name)
            if rows:
                return max(row["sequence"] for row in rows)
        if not segments and legacy_records(self.folder, first_only=True):
            raise IndexLayoutError(
                f"{self.folder} keeps one record file per batch, the layout of an earlier release; "
                "run `mainstem upgrade` once in this workspace to fold them into segment files, "
                "then run again"
            )
        return 0

    def between(self, first: int, last: int) -> list[dict[str, Any]]:
        """The records of sequences `first` to `last`, in order; each segment read once."""
        first = max(first, 1)
        found = []
        for segment in range(first // self.per_segment, last // self.per_segment + 1):
            rows = self._rows(self.segment_path(segment * self.per_segment))
            found += [row for row in rows if first <= row["sequence"] <= last]
        return sorted(found, key=lambda row: row["sequence"])

    def put(self, records: Iterable[dict[str, Any]], durable: bool = True) -> None:
        """Add or replace `records`: segments then id lines, or the other way with `ids_first`.

        The half written last is the one that makes a record count: by id (`of`) when the ids
        come last, by sequence (`last`, `between`) when the segments do.
        """
        records = list(records)
        ids = [{"batch_id": r["batch_id"], "sequence": int(r["sequence"])} for r in records]
        if self.ids_first:
            put_keyed(self.folder / ID, ids, durable=durable)
        by_segment: dict[Path, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            by_segment[self.segment_path(int(record["sequence"]))].append(record)
        for path, new in sorted(by_segment.items()):
            kept = {row["sequence"]: row for row in self._rows(path)}
            kept.update((int(row["sequence"]), row) for row in new)
            write_lines(path, (kept[s] for s in sorted(kept)), durable)
        if not self.ids_first:
            put_keyed(self.folder / ID, ids, durable=durable)

    def files(self) -> list[Path]:
        """Every segment and shard file the index holds."""
        found = [self.folder / SEQ / name for name in self._segments()]
        shards = self.folder / ID
        if shards.is_dir():
            found += sorted(p for p in shards.iterdir() if p.is_file() and p.suffix == SUFFIX)
        return found


def legacy_records(
    folder: Path, kinds: tuple[str, ...] = (SEQ, ID), first_only: bool = False
) -> list[Path]:
    """The one-file-per-batch records of the layout before segments (`seq/<aa>/<bb>/<cc>/<dd>.json`,
    `id/<ab>/<cd>/<id>.json`, `dropped/<ab>/<cd>/<id>.json`), which `mainstem upgrade` folds into
    segments and shards; with `first_only`, at most one."""
    found: list[Path] = []
    for kind in kinds:
        top = folder / kind
        if not top.is_dir():
            continue
        for path in top.glob("*/**/*.json"):
            if path.is_file():
                found.append(path)
                if first_only:
                    return found
    return sorted(found)
