"""Tombstones: the git-tracked record that retention dropped a raw batch's pack.

In: the raw store's folder and a batch id. Out: `index/dropped/<ab>/<cd>/<batch_id>.json` beside
the raw index (see `raw_store`), one small record per dropped pack: the batch (id, sequence,
name), the pack (md5, size), the lineage commit that processed it and that commit's date (read
from git, never from a clock), and the age retention kept it for. The record is committed (in a
`gc:` commit) before the pack leaves the DVC cache and remote, so lineage never claims a pack
that is gone; the commit that added it says when the pack was dropped, and by whom.
A tombstone is looked up by batch id, one file, whatever the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem.durable import read_json_object, write_json

DROPPED = "dropped"


@dataclass(frozen=True)
class Tombstone:
    """A raw pack that retention dropped: which batch, which pack, which commit processed it."""

    batch_id: str
    sequence: int
    name: str | None
    md5: str
    size: int
    lineage_commit: str
    lineage_date: str
    keep_raw_days: float

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "sequence": self.sequence,
            "name": self.name,
            "pack_md5": self.md5,
            "pack_size": self.size,
            "lineage_commit": self.lineage_commit,
            "lineage_date": self.lineage_date,
            "keep_raw_days": self.keep_raw_days,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tombstone:
        return cls(
            str(data["batch_id"]),
            int(data["sequence"]),
            data.get("name"),
            str(data["pack_md5"]),
            int(data["pack_size"]),
            str(data["lineage_commit"]),
            str(data["lineage_date"]),
            float(data["keep_raw_days"]),
        )


def tombstones_dir(raw_dir: Path) -> Path:
    return raw_dir / "index" / DROPPED


def tombstone_path(raw_dir: Path, batch_id: str) -> Path:
    return tombstones_dir(raw_dir).joinpath(batch_id[:2], batch_id[2:4], f"{batch_id}.json")


def tombstone_of(raw_dir: Path, batch_id: str) -> Tombstone | None:
    """The tombstone of batch `batch_id`; None while its pack has not been dropped."""
    if not batch_id or "/" in batch_id or batch_id.startswith("."):
        return None
    data = read_json_object(tombstone_path(raw_dir, batch_id))
    try:
        return Tombstone.from_json(data) if data else None
    except (KeyError, TypeError, ValueError):
        return None


def write_tombstone(raw_dir: Path, tombstone: Tombstone) -> Path:
    """Write `tombstone` durably; where it is."""
    path = tombstone_path(raw_dir, tombstone.batch_id)
    write_json(path, tombstone.to_json())
    return path
