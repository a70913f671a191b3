"""The master dataset on disk: a directory of key-range Parquet parts and a manifest.

In: a master directory path. Out: its manifest (which parts hold how many rows, which batches were
applied, with what fingerprint) and the parts themselves. The manifest keeps a summary of the
applied batches; the batches one by one are in the log beside it (`batch_log`). Layout:
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
from mainstem.master.batch_log import AppliedBatch, BatchSummary

__all__ = ["MANIFEST", "AppliedBatch", "Manifest", "Partitioning", "read_manifest", "read_part"]
MANIFEST = "_manifest.json"
FORMAT = 2  # 1 listed every batch in the manifest; 2 keeps a summary and the log beside it
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


@dataclass
class Manifest:
    contract: str
    key: str
    partitioning: Partitioning
    fingerprint: str
    parts: dict[str, int] = field(default_factory=dict)
    batches: BatchSummary = field(default_factory=BatchSummary)

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
            "batches": self.batches.to_json(),
        }


def read_manifest(master_dir: Path) -> Manifest | None:
    """The master's manifest, or None when there is no master (or not one mainstem wrote)."""
    try:
        raw = read_json(master_dir / MANIFEST)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    try:
        batches = BatchSummary.from_json(raw["batches"])
    except (KeyError, TypeError, ValueError):
        return None
    return Manifest(
        contract=raw["contract"],
        key=raw["key"],
        partitioning=Partitioning(raw["partitioning"]["kind"], int(raw["partitioning"]["size"])),
        fingerprint=raw["fingerprint"],
        parts={str(k): int(v) for k, v in raw["parts"].items()},
        batches=batches,
    )


def read_part(master_dir: Path, name: str) -> pa.Table:
    """One part, decoded in the calling thread: the merge already runs one part per core.

    Read as one file, not through `pq.read_table`: its dataset layer (discovery, a scan plan,
    partition inference) cost more than the decoding itself on a 100,000-row part, once for
    every part a batch touches.
    """
    return pq.ParquetFile(master_dir / name).read(use_threads=False)
