"""A raw history of many batches in a few seconds, without running the pipeline once per batch.

In: a workspace root, its raw store and the batches to add (name and files, in order). Out: each
batch's pack in the DVC cache under its md5, exactly as the ingest stage and `dvc commit` would
have left it, and its index lines. For benchmarks (P11) and tests that need a long history:
the pipeline then sees N ingested batches and processes the next one as batch N + 1. Nothing here
is lineage: no git commit and no dvc.lock is written, so the caller commits what it needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mainstem.intake.delivery import DeliveredFile, batch_id_of
from mainstem.intake.raw_store import (
    RawRecord,
    cached_pack,
    last_sequence,
    pack_bytes,
    write_records,
)


@dataclass(frozen=True)
class PastBatch:
    name: str | None
    files: dict[str, bytes]

    @property
    def batch_id(self) -> str:
        return batch_id_of(
            DeliveredFile(path, len(data), hashlib.sha256(data).hexdigest())
            for path, data in self.files.items()
        )


def add_past_batches(root: Path, raw_dir: Path, batches: Iterable[PastBatch]) -> list[RawRecord]:
    """Append `batches` to the raw store's history as if each had been ingested; their records.

    Packs go straight into the DVC cache (not through `dvc add`), one file each, so the cost is
    the batches' bytes. The writes are plain, not fsynced one by one: a crash leaves a history to
    build again, never a workspace's lineage.
    """
    added = []
    sequence = last_sequence(raw_dir)
    for batch in batches:
        sequence += 1
        meta = {"batch_id": batch.batch_id, "sequence": sequence, "name": batch.name}
        data = pack_bytes(meta, batch.files)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        target = cached_pack(root, md5)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        record = RawRecord(
            batch.batch_id, sequence, batch.name, md5, hashlib.sha256(data).hexdigest(), len(data)
        )
        added.append(record)
    write_records(raw_dir, added, durable=False)
    return added
