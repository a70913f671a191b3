"""The validated store: this batch's results as the validate stage's output, every batch's in the
DVC cache, found through a flat git-tracked index (see `layout`).

In: BatchResults from `validation`, the raw batches to (re)validate. Out, under `data/validated/`:
- `batch/`: the newest batch's `accepted.parquet`, `rejected.parquet`, `report.json`,
  `report.html` (the same report as a self-contained page for a person) and `images.tar` (its
  canonical images, one deterministic pack); staged and swapped in whole;
- every batch's five files, this one's included, straight into the DVC cache under their md5, as
  `dvc commit` would store them (for a rebuild's past batches, outside any `dvc.lock`);
- `index/`: one record per batch naming those md5s, its figures, its images and the running
  totals through it (so metrics and the report's history read one record, not every batch), and
  `state.json`, the contract and code fingerprint the store was built with.
A batch costs its own files and two index lines (a segment and a shard rewritten); an
incremental run and a rebuild leave the same master and metrics.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from mainstem import crashpoints
from mainstem.durable import (
    canonical_json,
    fresh_dir,
    make_dirs,
    publish_dir,
    staging_path,
    storage_errors,
    write_bytes,
    write_json,
)
from mainstem.fingerprint import fingerprint
from mainstem.intake.ingest import RawBatch, StoredBatch, stored_batches
from mainstem.intake.raw_store import cached_pack, last_sequence, records
from mainstem.params import Params
from mainstem.validation.batch import BatchResult, validate_batch
from mainstem.validation.columnar import arrow_schema, parquet_bytes, text_schema, to_arrow
from mainstem.validation.contract import Contract
from mainstem.validation.drift_report import with_drift_section
from mainstem.validation.image_pack import image_pack_bytes, read_pack_images
from mainstem.validation.layout import (
    ACCEPTED,
    IMAGE_PACK,
    INDEX,
    REJECTED,
    REPORT,
    REPORT_HTML,
    STATE,
    TOTALS,
    ValidatedRecord,
    batch_dir,
    last_validated,
    read_state,
    record_at,
    record_of,
    records_between,
    result_file,
    validated_index,
    workspace_of,
)
from mainstem.validation.report import MAX_HISTORY, Earlier, batch_thumbnails, render

log = logging.getLogger(__name__)

_MAX_IMAGE_READ = 64 << 20  # more than any image worth a thumbnail; a longer read is cut off
_SUMMARY = (
    "name",
    "status",
    "contract",
    "rows_in",
    "rows_accepted",
    "rows_rejected",
    "accepted_sha256",
)
_FIGURES = ("rows_in", "rows_accepted", "rows_rejected", "images_accepted", "images_rejected")


class DriftMeter(Protocol):
    """Measures a batch's accepted rows against the pinned reference (drift_store.DriftMeter)."""

    @property
    def pin_json(self) -> dict[str, Any] | None: ...

    def __call__(
        self, accepted: pd.DataFrame, report: dict[str, Any], images: dict[str, bytes]
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ValidatedStore:
    """Where a run stores validated batches, and the contract and code fingerprint it uses."""

    validated_dir: Path
    root: Path
    fingerprint: str

    @classmethod
    def at(cls, validated_dir: Path, fingerprint: str) -> ValidatedStore:
        return cls(validated_dir, workspace_of(validated_dir), fingerprint)


def write_state(validated_dir: Path, state: dict[str, Any]) -> None:
    if read_state(validated_dir) != state:
        write_json(validated_dir / INDEX / STATE, state)


def totals_after(before: dict[str, int], report: dict[str, Any]) -> dict[str, int]:
    """The running totals once `report`'s batch is counted on top of `before`."""
    after = {name: int(before.get(name, 0)) for name in TOTALS}
    after["batches_validated"] += 1
    after["batches_rejected"] += report["status"] == "rejected"
    for figure in _FIGURES:
        after[f"{figure}_total"] += int(report[figure])
    return after


def earlier_batches(validated_dir: Path, sequence: int) -> Earlier:
    """What the report of batch `sequence` shows of the batches before it: the last few, and
    totals from one record."""
    before = record_at(validated_dir, sequence - 1)
    shown = records_between(validated_dir, sequence - MAX_HISTORY, sequence - 1)
    totals = before.totals if before else {}
    return Earlier(
        [{"batch_id": r.batch_id, "sequence": r.sequence, **r.summary} for r in shown],
        int(totals.get("batches_validated", 0)),
        int(totals.get("rows_accepted_total", 0)),
    )


def result_bytes(
    result: BatchResult,
    contract: Contract,
    page: Callable[[dict[str, Any]], bytes],
    drift: DriftMeter | None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """One batch's report and its five files, by name; its drift measured when `drift` is given."""
    accepted = parquet_bytes(to_arrow(result.accepted, arrow_schema(contract)))
    rejected = parquet_bytes(to_arrow(result.rejected, text_schema(list(result.rejected.columns))))
    report = result.report()
    report["accepted_sha256"] = hashlib.sha256(accepted).hexdigest()
    html = page(report)
    if drift is not None:
        report["drift"] = _measured(drift, accepted, report, result.canonical)
        html = with_drift_section(html, report["drift"])
    files = {
        ACCEPTED: accepted,
        REJECTED: rejected,
        REPORT: canonical_json(report),
        REPORT_HTML: html,
        IMAGE_PACK: image_pack_bytes(result.canonical),
    }
    return report, files


def _measured(
    drift: DriftMeter, accepted: bytes, report: dict[str, Any], images: dict[str, bytes]
) -> dict[str, Any]:
    frame = pd.read_parquet(io.BytesIO(accepted))
    return drift(frame if report["status"] == "accepted" else frame.iloc[0:0], report, images)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def store_batch(
    store: ValidatedStore, report: dict[str, Any], files: dict[str, bytes], current: bool
) -> ValidatedRecord:
    """Store one batch's files in the DVC cache (and as `batch/` when `current`), then its
    record: its id line, then its segment, the one that makes it count as validated."""
    validated_dir = store.validated_dir
    sequence = int(report["sequence"])
    before = record_at(validated_dir, sequence - 1)
    record = ValidatedRecord(
        str(report["batch_id"]),
        sequence,
        {name: report.get(name) for name in _SUMMARY},
        {name: _md5(data) for name, data in sorted(files.items())},
        tuple(report["stored_images"]),
        totals_after(before.totals if before else {}, report),
        store.fingerprint,
    )
    with storage_errors(f"could not store validated batch {record.batch_id}"):
        # Into the cache as `dvc commit` would store them (it then finds them there and adds
        # nothing): a reader finds any batch's files there, whatever has run since.
        for name, data in sorted(files.items()):
            target = cached_pack(store.root, record.files[name])
            if not target.is_file():
                crashpoints.reach("validated cache")
                write_bytes(target, data)
        if current:
            staged = fresh_dir(staging_path(batch_dir(validated_dir), "result"))
            for name, data in sorted(files.items()):
                (staged / name).write_bytes(data)
            publish_dir(staged, batch_dir(validated_dir))
        crashpoints.reach("validated index")
        validated_index(validated_dir).put([record.to_json()])
    return record


def _reader(raw: RawBatch | None) -> Callable[[str], bytes | None]:
    """Reads a delivered file of `raw` for the report, up to a size no image may exceed."""

    def read(path: str) -> bytes | None:
        if raw is None:
            return None
        try:
            with open(raw.file_path(path), "rb") as handle:
                return handle.read(_MAX_IMAGE_READ)
        except OSError:
            return None

    return read


def _validate_one(
    batch: RawBatch | StoredBatch,
    validated_dir: Path,
    contract: Contract,
    workers: int,
    drift: DriftMeter | None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    with batch.opened() as raw:
        result = validate_batch(raw, contract, workers)
        earlier = earlier_batches(validated_dir, raw.sequence)
        thumbnails = batch_thumbnails(result, contract, _reader(raw))
        report, files = result_bytes(
            result, contract, lambda rep: render(rep, thumbnails, earlier), drift
        )
    log.info(
        "batch %s: %s, %d of %d rows accepted",
        raw.batch_id,
        report["status"],
        report["rows_accepted"],
        report["rows_in"],
    )
    return report, files


def read_report_of(store: ValidatedStore, record: ValidatedRecord) -> dict[str, Any]:
    path = result_file(store.validated_dir, record, REPORT, store.root)
    return dict(json.loads(path.read_bytes()))


def _remeasured(
    store: ValidatedStore, record: ValidatedRecord, drift: DriftMeter
) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """The newest batch's files with its drift measured again, when the pin moved; else None."""
    report = read_report_of(store, record)
    if "drift" in report and report["drift"].get("reference") == drift.pin_json:
        return None
    files = {
        name: result_file(store.validated_dir, record, name, store.root).read_bytes()
        for name in record.files
    }
    pack = result_file(store.validated_dir, record, IMAGE_PACK, store.root)
    images = read_pack_images(pack, record.images)
    report["drift"] = _measured(drift, files[ACCEPTED], report, images)
    files[REPORT] = canonical_json(report)
    files[REPORT_HTML] = with_drift_section(files[REPORT_HTML], report["drift"])
    return report, files


def _validated_by(validated_dir: Path, record: ValidatedRecord, fingerprint: str) -> bool:
    """Whether `record` says its batch is validated under `fingerprint`: both its records are
    written (a crash between them leaves the batch to validate again)."""
    return record.fingerprint == fingerprint and record_at(validated_dir, record.sequence) == record


def refresh(
    raw_batches: Sequence[RawBatch | StoredBatch],
    store: ValidatedStore,
    contract: Contract,
    workers: int = 0,
    drift: DriftMeter | None = None,
) -> dict[str, Any] | None:
    """Validate each of `raw_batches` (in sequence order) that the index does not hold under the
    store's fingerprint; the newest batch's report, or None when there is none.

    Every batch's files go to the DVC cache, the newest's also to `batch/`. When nothing is
    validated and the drift reference moved, the newest batch's drift is measured again.
    """
    validated_dir = store.validated_dir
    newest: tuple[dict[str, Any], ValidatedRecord] | None = None
    for at, batch in enumerate(raw_batches):
        record = record_of(validated_dir, batch.batch_id)
        last = at == len(raw_batches) - 1
        if record is not None and _validated_by(validated_dir, record, store.fingerprint):
            if last:
                newest = (read_report_of(store, record), record)
            continue
        report, files = _validate_one(batch, validated_dir, contract, workers, drift)
        record = store_batch(store, report, files, last)
        newest = (report, record) if last else None
    if newest is not None and drift is not None:
        again = _remeasured(store, newest[1], drift)
        if again is not None:
            newest = (again[0], store_batch(store, again[0], again[1], True))
    make_dirs(batch_dir(validated_dir))
    write_state(validated_dir, {"contract": contract.ref, "fingerprint": store.fingerprint})
    return newest[0] if newest else None


def pending_batches(
    raw_dir: Path, root: Path, store: ValidatedStore, contract: Contract
) -> list[StoredBatch]:
    """The raw batches a run must look at: those after the newest validated one (and that one,
    for its drift), or all of them when the store was built under another contract or code."""
    state = {"contract": contract.ref, "fingerprint": store.fingerprint}
    if read_state(store.validated_dir) != state:
        return stored_batches(raw_dir, root)
    newer = last_sequence(raw_dir) - last_validated(store.validated_dir)
    return [StoredBatch(record, raw_dir, root) for record in records(raw_dir, newer + 1)]


def update_validated(
    params: Params, contract: Contract, drift: DriftMeter | None = None
) -> tuple[dict[str, Any] | None, ValidatedRecord | None]:
    """Validate every raw batch not yet validated under this contract and code; the newest
    batch's report and record."""
    code = fingerprint("validate", {"contract": contract.fingerprint})
    validated = params.validate.validated_dir
    store = ValidatedStore(validated, params.root, code)
    batches = pending_batches(params.ingest.raw_dir, params.root, store, contract)
    report = refresh(batches, store, contract, params.validate.image_workers, drift)
    newest = record_of(validated, str(report["batch_id"])) if report else None
    return report, newest
