"""Fold the one-file-per-batch indexes of an earlier release into segment and shard files.

In: a workspace's raw and validated store folders. Out: every record of the raw index, the
validated index and the raw tombstones, written into `record_index`'s segments and shards, then
the per-batch files removed, so git tracks a few hundred files where it tracked four per batch.
A record counts in the new layout exactly as it counted in the old: a raw record by its id file,
a validated record by its sequence file (each store's last write). The segments are written
durably before any old file goes, so a crash leaves a workspace this runs on again to the same
end. Earlier commits keep their own files: `git log` of the id index still finds each batch's
lineage commit (`gc.lineage_commits` reads both layouts).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem.durable import fsync_dir, read_json_object
from mainstem.errors import StorageError
from mainstem.intake.raw_store import raw_index
from mainstem.intake.raw_tombstones import DROPPED, tombstones_dir
from mainstem.intake.record_index import ID, SEQ, RecordIndex, legacy_records, put_keyed
from mainstem.validation.layout import validated_index


@dataclass(frozen=True)
class Folded:
    """What one fold moved: records per store and tombstones."""

    raw: int = 0
    validated: int = 0
    tombstones: int = 0

    @property
    def any(self) -> bool:
        return bool(self.raw or self.validated or self.tombstones)

    def describe(self) -> str:
        return (
            f"{self.raw} raw and {self.validated} validated index records and {self.tombstones} "
            "tombstones, one file each, folded into segment files (by sequence) and 256 shard "
            "files at most (by batch id)"
        )


def _objects(paths: list[Path]) -> list[dict[str, Any]]:
    """The records in `paths`; a file that holds none stops the fold before anything is removed."""
    found = []
    for path in paths:
        data = read_json_object(path)
        if data is None or "batch_id" not in data or "sequence" not in data:
            raise StorageError(
                f"{path} is no index record; nothing was changed. Restore it with `git checkout "
                f"-- {path}` (or remove it if git never tracked it), then run `mainstem upgrade` "
                "again"
            )
        found.append(data)
    return found


def _counted(index: RecordIndex, counted_by: str) -> list[dict[str, Any]]:
    """The old records of `index` that count, in sequence order (read only)."""
    if not legacy_records(index.folder, first_only=True):
        return []
    by_seq = {int(r["sequence"]): r for r in _objects(legacy_records(index.folder, (SEQ,)))}
    by_id = {str(r["batch_id"]): r for r in _objects(legacy_records(index.folder, (ID,)))}
    if counted_by == ID:  # a sequence file alone was a crash's leftover: not ingested
        kept = [r for r in by_id.values() if by_seq.get(int(r["sequence"])) is not None]
    else:  # an id file alone was a crash's leftover: not validated
        kept = [r for r in by_seq.values() if str(r["batch_id"]) in by_id]
    return sorted(kept, key=lambda r: int(r["sequence"]))


def _remove_old(folder: Path, kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        top = folder / kind
        if not top.is_dir():
            continue
        for entry in sorted(top.iterdir()):
            if entry.is_dir():
                shutil.rmtree(entry)
        fsync_dir(top)


def fold_indexes(raw_dir: Path, validated_dir: Path) -> Folded:
    """Fold every per-batch record file under the two stores into segments (see the module).

    Every old file is read before anything is written, so a damaged one stops the fold with
    nothing changed.
    """
    raw, validated = raw_index(raw_dir), validated_index(validated_dir)
    raw_records, validated_records = _counted(raw, ID), _counted(validated, SEQ)
    stones = _objects(legacy_records(raw.folder, (DROPPED,)))
    for index, found in ((raw, raw_records), (validated, validated_records)):
        if found:
            index.put(found)
    if stones:
        put_keyed(tombstones_dir(raw_dir), stones)
    _remove_old(raw.folder, (SEQ, ID, DROPPED))
    _remove_old(validated.folder, (SEQ, ID))
    return Folded(len(raw_records), len(validated_records), len(stones))
