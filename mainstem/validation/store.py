"""The validated store: one folder per raw batch plus a shared, content-addressed image store.

In: BatchResults from `validation`. Out, under `data/validated/`:
- `<batch_id>/accepted.parquet`, `<batch_id>/rejected.parquet`, `<batch_id>/report.json`, and
  `<batch_id>/report.html`, the same report as a self-contained page for a person;
- `images/<ab>/<sha256>.<ext>`: each canonical image once, whichever batches use it;
- `_state.json`: the fingerprint of the contract and code the store was built with.
Each batch folder is staged and swapped in whole. Images no accepted row refers to are pruned, so
an incremental run and a rebuild leave the same files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mainstem.durable import (
    fresh_dir,
    fsync_dir,
    publish_dir,
    staging_path,
    storage_errors,
    write_bytes,
    write_json,
)
from mainstem.fingerprint import fingerprint
from mainstem.intake.ingest import RawBatch, StoredBatch, stored_batches
from mainstem.params import Params
from mainstem.validation.batch import BatchResult, validate_batch
from mainstem.validation.columnar import arrow_schema, parquet_bytes, text_schema, to_arrow
from mainstem.validation.contract import Contract
from mainstem.validation.layout import (
    ACCEPTED,
    IMAGES,
    REJECTED,
    REPORT,
    REPORT_HTML,
    STATE,
    read_report,
    read_state,
)
from mainstem.validation.report import batch_thumbnails, render

log = logging.getLogger(__name__)

_MAX_IMAGE_READ = 64 << 20  # more than any image worth a thumbnail; a longer read is cut off


def write_state(validated_dir: Path, state: dict[str, Any]) -> None:
    if read_state(validated_dir) != state:
        write_json(validated_dir / STATE, state)


def write_result(
    validated_dir: Path,
    result: BatchResult,
    contract: Contract,
    raw: RawBatch | None = None,
    earlier: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Store one batch's outputs; images first, so no published row points at a missing image.

    `raw` lets the HTML report show rejected images; `earlier` are the reports of the batches
    before this one, for its place in the history.
    """
    accepted = parquet_bytes(to_arrow(result.accepted, arrow_schema(contract)))
    rejected = parquet_bytes(to_arrow(result.rejected, text_schema(list(result.rejected.columns))))
    report = result.report()
    report["accepted_sha256"] = hashlib.sha256(accepted).hexdigest()
    page = render(report, batch_thumbnails(result, contract, _reader(raw)), earlier or [])
    with storage_errors(f"could not store validated batch {result.batch_id}"):
        _store_images(validated_dir / IMAGES, result.canonical)
        staged = fresh_dir(staging_path(validated_dir, result.batch_id))
        (staged / ACCEPTED).write_bytes(accepted)
        (staged / REJECTED).write_bytes(rejected)
        write_json(staged / REPORT, report)
        (staged / REPORT_HTML).write_bytes(page)
        publish_dir(staged, validated_dir / result.batch_id)
    return report


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


def _store_images(images_dir: Path, canonical: dict[str, bytes]) -> None:
    for name, data in sorted(canonical.items()):
        target = images_dir / name
        if not target.exists():
            write_bytes(target, data)


def prune(validated_dir: Path, batch_ids: set[str]) -> None:
    """Remove batch folders with no raw batch and images no accepted row refers to."""
    if not validated_dir.is_dir():
        return
    with storage_errors(f"could not prune {validated_dir}"):
        referenced = _prune_batches(validated_dir, batch_ids)
        if (validated_dir / IMAGES).is_dir():
            _prune_images(validated_dir / IMAGES, referenced)


def _prune_batches(validated_dir: Path, batch_ids: set[str]) -> set[str]:
    """Remove the folders of batches not in `batch_ids`; the images the others refer to."""
    referenced: set[str] = set()
    for child in sorted(validated_dir.iterdir()):
        if child.name in (STATE, IMAGES):
            continue
        if child.name not in batch_ids:
            _remove(child)
            continue
        report = read_report(validated_dir, child.name) or {}
        referenced.update(report.get("stored_images", []))
    return referenced


def _prune_images(images: Path, referenced: set[str]) -> None:
    changed: set[Path] = set()
    for path in sorted(images.rglob("*")):
        if path.is_file() and path.relative_to(images).as_posix() not in referenced:
            path.unlink()
            changed.add(path.parent)
    for path in sorted(images.iterdir()):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            changed.discard(path)
            changed.add(images)
    # Stored images were written durably; only removals need their folder synced. An fsync of
    # every image costs milliseconds each and grows with the store's history.
    for folder in sorted(changed):
        fsync_dir(folder)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        os.unlink(path)


def refresh(
    raw_batches: Sequence[RawBatch | StoredBatch],
    validated_dir: Path,
    contract: Contract,
    fingerprint: str,
    workers: int = 0,
) -> list[dict[str, Any]]:
    """Bring the store up to date with the raw batches; every batch's report, in sequence order.

    `raw_batches` are RawBatches or StoredBatches, each opened only while it is validated.
    Batches validated with the same fingerprint are kept; a new fingerprint (contract, code or
    settings changed) re-validates every batch.
    """
    state = {"contract": contract.ref, "fingerprint": fingerprint}
    rebuild = read_state(validated_dir) != state
    reports: list[dict[str, Any]] = []
    for batch in raw_batches:
        report = None if rebuild else read_report(validated_dir, batch.batch_id)
        if report is None:
            with batch.opened() as raw:
                result = validate_batch(raw, contract, workers)
                report = write_result(validated_dir, result, contract, raw, reports)
            log.info(
                "batch %s: %s, %d of %d rows accepted",
                raw.batch_id,
                report["status"],
                report["rows_accepted"],
                report["rows_in"],
            )
        reports.append(report)
    validated_dir.mkdir(parents=True, exist_ok=True)
    prune(validated_dir, {batch.batch_id for batch in raw_batches})
    write_state(validated_dir, state)
    return reports


def update_validated(params: Params, contract: Contract) -> list[dict[str, Any]]:
    """Validate every raw batch not yet validated under this contract and code; all reports."""
    code = fingerprint("validate", {"contract": contract.fingerprint})
    return refresh(
        stored_batches(params.ingest.raw_dir, params.root),
        params.validate.validated_dir,
        contract,
        code,
        params.validate.image_workers,
    )
