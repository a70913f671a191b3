"""The master dataset on disk: a directory of key-range Parquet parts and a manifest.

In: a master directory path. Out: its manifest (which parts hold how many rows, which batches were
applied in which order, with what fingerprint) and the parts themselves. Layout:
- integer keys: `part-<key // span, 12 digits>.parquet`, so parts hold contiguous key ranges and a
  batch of recent keys touches the last part or two;
- text keys: `part-h<bucket>.parquet`, by a stable hash of the key.
Each part is sorted by key and names sort in key order, so `pandas.read_parquet(master_dir)` reads
the whole master in a deterministic order; it skips `_manifest.json` like any `_`-prefixed file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mainstem.durable import read_json
from mainstem.errors import MasterError

MANIFEST = "_manifest.json"
FORMAT = 1
_RANGE_DIGITS = 12


@dataclass(frozen=True)
class Partitioning:
    kind: Literal["range", "hash"]
    size: int  # key span for "range", bucket count for "hash"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size}

    def part_indexes(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The part each key belongs to."""
        if self.kind == "range":
            values = np.asarray(keys.to_numpy(zero_copy_only=False), dtype=np.int64)
            if values.size and values.min() < 0:
                raise MasterError(
                    "key-range parts need keys >= 0; add 'greater_than_or_equal_to: 0' to the "
                    "primary key in the contract"
                )
            indexes = values // self.size
            if indexes.size and indexes.max() >= 10**_RANGE_DIGITS:
                raise MasterError(f"keys up to {values.max()} need a larger merge.part_key_span")
            return indexes
        return np.fromiter(
            (_bucket(str(key), self.size) for key in keys.to_pylist()),
            dtype=np.int64,
            count=len(keys),
        )

    def part_name(self, index: int) -> str:
        if self.kind == "range":
            return f"part-{index:0{_RANGE_DIGITS}d}.parquet"
        return f"part-h{index:05d}.parquet"


def _bucket(key: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % buckets


@dataclass(frozen=True)
class AppliedBatch:
    batch_id: str
    sequence: int
    status: str
    accepted_sha256: str
    rows_accepted: int

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "sequence": self.sequence,
            "status": self.status,
            "accepted_sha256": self.accepted_sha256,
            "rows_accepted": self.rows_accepted,
        }


@dataclass
class Manifest:
    contract: str
    key: str
    partitioning: Partitioning
    fingerprint: str
    parts: dict[str, int] = field(default_factory=dict)
    batches: list[AppliedBatch] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.parts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "contract": self.contract,
            "key": self.key,
            "partitioning": self.partitioning.to_json(),
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "parts": dict(sorted(self.parts.items())),
            "batches": [batch.to_json() for batch in self.batches],
        }


def read_manifest(master_dir: Path) -> Manifest | None:
    """The master's manifest, or None when there is no master (or not one mainstem wrote)."""
    try:
        raw = read_json(master_dir / MANIFEST)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    return Manifest(
        contract=raw["contract"],
        key=raw["key"],
        partitioning=Partitioning(raw["partitioning"]["kind"], int(raw["partitioning"]["size"])),
        fingerprint=raw["fingerprint"],
        parts={str(k): int(v) for k, v in raw["parts"].items()},
        batches=[AppliedBatch(**b) for b in raw["batches"]],
    )


def read_part(master_dir: Path, name: str) -> pa.Table:
    """One part, decoded in the calling thread: the merge already runs one part per core."""
    return pq.read_table(master_dir / name, use_threads=False)
