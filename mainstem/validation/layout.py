"""Where the validated store keeps each file, and reading its index and small JSON files.

In: the validated store's folder (`validate.validated_dir`) and a batch id or sequence. Out: paths,
the index records, and the parsed `report.json` of any batch. Under the store's folder:
- `batch/`, the validate stage's only DVC output: THIS batch's `accepted.parquet`,
  `rejected.parquet`, `report.json`, `report.html` and `images.tar` (its canonical images, one
  deterministic pack);
- `index/`: one git-tracked record per batch, in segment files of 16 batches, found by id
  through 256 shard files (`record_index`). A record names the md5 of each of the batch's five
  files (kept in the DVC cache and remote, pinned by its lineage commit), its figures, the
  canonical images in its pack and the running totals through it; `index/state.json`: the
  contract and code fingerprint the store was built with.
Every lookup reads one segment (and one shard, by id); the newest, the last segment. Kept apart
from `store`, which writes the store and imports the whole validation stack, so readers (merge,
status, the batch flow) start without pandas and pandera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mainstem.durable import read_json_object
from mainstem.errors import ValidatedBatchMissingError
from mainstem.intake.raw_store import cached_pack
from mainstem.intake.record_index import RecordIndex

BATCH = "batch"
INDEX = "index"
STATE = "state.json"
REPORT = "report.json"
REPORT_HTML = "report.html"
ACCEPTED = "accepted.parquet"
REJECTED = "rejected.parquet"
IMAGE_PACK = "images.tar"
RESULT_FILES = (ACCEPTED, REJECTED, REPORT, REPORT_HTML, IMAGE_PACK)
TOTALS = (
    "batches_validated",
    "batches_rejected",
    "rows_in_total",
    "rows_accepted_total",
    "rows_rejected_total",
    "images_accepted_total",
    "images_rejected_total",
)


@dataclass(frozen=True)
class ValidatedRecord:
    """One validated batch as the index names it: its figures and where its files are."""

    batch_id: str
    sequence: int
    summary: dict[str, Any]
    files: dict[str, str]
    images: tuple[str, ...] = ()
    totals: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "sequence": self.sequence,
            "summary": self.summary,
            "files": self.files,
            "images": list(self.images),
            "totals": self.totals,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValidatedRecord:
        return cls(
            str(data["batch_id"]),
            int(data["sequence"]),
            dict(data.get("summary") or {}),
            {str(k): str(v) for k, v in (data.get("files") or {}).items()},
            tuple(str(name) for name in data.get("images") or ()),
            {str(k): int(v) for k, v in (data.get("totals") or {}).items()},
            str(data.get("fingerprint", "")),
        )


def batch_dir(validated_dir: Path) -> Path:
    return validated_dir / BATCH


# A validated record names its batch's canonical images, a few KB for 50 images: small segments
# keep what a write rewrites, and what git stores for it, near the size of the batch's own records.
VALIDATED_SEGMENT = 16


def validated_index(validated_dir: Path) -> RecordIndex:
    """The id line first, the segment last: a record counts as validated (`last_validated`)
    only once it is whole."""
    return RecordIndex(validated_dir / INDEX, VALIDATED_SEGMENT, ids_first=True)


def record_of(validated_dir: Path, batch_id: str) -> ValidatedRecord | None:
    """The record of batch `batch_id`; None when it was never validated."""
    if not batch_id or "/" in batch_id or batch_id.startswith("."):
        return None
    data = validated_index(validated_dir).of(batch_id)
    return ValidatedRecord.from_json(data) if data else None


def record_at(validated_dir: Path, sequence: int) -> ValidatedRecord | None:
    data = validated_index(validated_dir).at(sequence)
    return ValidatedRecord.from_json(data) if data else None


def last_validated(validated_dir: Path) -> int:
    """The highest sequence in the index (0 when empty); reads the newest segment."""
    return validated_index(validated_dir).last()


def records_between(validated_dir: Path, first: int, last: int) -> list[ValidatedRecord]:
    """The records of sequences `first` to `last`, in order; missing ones left out."""
    found = validated_index(validated_dir).between(first, last)
    return [ValidatedRecord.from_json(data) for data in found]


def read_state(validated_dir: Path) -> dict[str, Any]:
    return read_json_object(validated_dir / INDEX / STATE) or {}


def workspace_of(path: Path) -> Path:
    """The workspace `path` is in: the nearest folder up holding `.dvc` or `params.yaml`."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if (folder / ".dvc").is_dir() or (folder / "params.yaml").is_file():
            return folder
    return path.parent


def result_file(
    validated_dir: Path, record: ValidatedRecord, name: str, root: Path | None = None
) -> Path:
    """Where file `name` of the batch `record` names is: `batch/` when it is that batch's, else
    DVC's cached copy; a ValidatedBatchMissingError naming the fix when neither holds it."""
    current = batch_dir(validated_dir) / name
    if (read_json_object(batch_dir(validated_dir) / REPORT) or {}).get(
        "batch_id"
    ) == record.batch_id and current.is_file():
        return current
    md5 = record.files.get(name, "")
    cached = cached_pack(root or workspace_of(validated_dir), md5) if md5 else None
    if cached is not None and cached.is_file():
        return cached
    raise ValidatedBatchMissingError(
        f"the {name} of validated batch {record.batch_id} (sequence {record.sequence}, md5 "
        f"{md5 or 'unrecorded'}) is neither in {batch_dir(validated_dir)} nor in the DVC cache; "
        "run `mainstem upgrade --fetch-raw` to fetch past batches' files from the DVC remote"
    )


def read_report(
    validated_dir: Path, batch_id: str, root: Path | None = None
) -> dict[str, Any] | None:
    """A batch's validation report, or None when the batch has not been validated."""
    record = record_of(validated_dir, batch_id)
    if record is None:
        return None
    return read_json_object(result_file(validated_dir, record, REPORT, root))
