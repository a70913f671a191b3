"""Tombstones: the git-tracked record that retention dropped a raw batch's pack.

In: the raw store's folder and a batch id. Out: `index/dropped/<ab>.jsonl` beside the raw index
(see `raw_store`), one line per dropped pack in its id's shard (256 files at most, see
`record_index`): the batch (id, sequence,
name), the pack (md5, size), the lineage commit that processed it and that commit's date (read
from git, never from a clock), and the age retention kept it for. The record is committed (in a
`gc:` commit) before the pack leaves the DVC cache and remote, so lineage never claims a pack
that is gone; the commit that added it says when the pack was dropped, and by whom.
A tombstone is looked up by batch id, in one shard file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem.intake.record_index import get_keyed, put_keyed, shard_name

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
    """The shard file that holds (or would hold) the tombstone of `batch_id`."""
    return tombstones_dir(raw_dir) / shard_name(batch_id)


def tombstone_of(raw_dir: Path, batch_id: str) -> Tombstone | None:
    """The tombstone of batch `batch_id`; None while its pack has not been dropped."""
    data = get_keyed(tombstones_dir(raw_dir), batch_id)
    try:
        return Tombstone.from_json(data) if data else None
    except (KeyError, TypeError, ValueError):
        return None


def write_tombstones(raw_dir: Path, tombstones: list[Tombstone]) -> list[Path]:
    """Write `tombstones` durably; the shard files written."""
    return put_keyed(tombstones_dir(raw_dir), [t.to_json() for t in tombstones])
