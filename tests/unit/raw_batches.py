"""Raw batches written to disk the way ingest lays them out, for tests of bad inputs.

In: the files a producer delivered (path -> bytes), or rows and images to encode first. Out: a
RawBatch over `<root>/batch.json` and `<root>/files/...`, the produce/v1 contract or a variant of
it written to tmp_path, and the master a list of raw batches ends up as.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

from mainstem.intake.ingest import RawBatch, read_raw_batch
from mainstem.master.merge import MasterSpec, refresh_master
from mainstem.master.parts import Manifest, Partitioning
from mainstem.validation.batch import BatchResult, validate_batch
from mainstem.validation.columnar import arrow_schema
from mainstem.validation.contract import Contract, load_contract
from mainstem.validation.layout import ACCEPTED, read_report, record_of, result_file
from mainstem.validation.store import DriftMeter, ValidatedStore, refresh

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "contracts" / "produce" / "v1.yaml"
COLUMNS = ["item_id", "supplier", "weight_g", "diameter_mm", "harvested_on", "image_file", "grade"]


def v1() -> Contract:
    return load_contract(V1)


def variant(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Contract:
    """produce/v1 changed by `edit` (which mutates the parsed YAML), loaded from tmp_path."""
    document = yaml.safe_load(V1.read_text())
    edit(document)
    path = tmp_path / "contracts" / f"variant-{len(list(tmp_path.glob('contracts/*')))}" / "v1.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_contract(path)


def with_note_column(document: dict[str, Any]) -> None:
    """A free-text column, so cells reach the master exactly as delivered."""
    document["schema"]["columns"]["note"] = {"dtype": "str", "nullable": True}


def image_rule(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document["contract"]["images"]["image_file"].update(changes)

    return edit


def row(item_id: object = 1, **changes: object) -> dict[str, object]:
    """A row contract v1 accepts, with `changes` applied."""
    values: dict[str, object] = {
        "item_id": item_id,
        "supplier": "north",
        "weight_g": 120.5,
        "diameter_mm": 60.0,
        "harvested_on": "2024-05-01",
        "image_file": "a.png",
        "grade": "A",
    }
    values.update(changes)
    return values


def csv_bytes(rows: list[dict[str, object]], columns: list[str] | None = None) -> bytes:
    columns = columns or list(rows[0])
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    return buffer.getvalue().encode()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (40, 160, 60)) -> bytes:
    return encode(Image.new("RGB", size, colour), "PNG")


def write_raw_batch(
    root: Path, files: dict[str, bytes], batch_id: str = "b1", sequence: int = 1
) -> RawBatch:
    """Lay `files` out as ingest does and read them back as a RawBatch."""
    listed = []
    for rel, data in sorted(files.items()):
        target = root / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        listed.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    meta = {"batch_id": batch_id, "sequence": sequence, "name": None, "files": listed}
    (root / "batch.json").write_text(json.dumps(meta))
    return read_raw_batch(root)


def validate_files(
    root: Path, files: dict[str, bytes], contract: Contract | None = None
) -> BatchResult:
    """Validate a raw batch made of `files`; the result is checked to be reportable as JSON."""
    result = validate_batch(write_raw_batch(root, files), contract or v1(), workers=1)
    json.dumps(result.report())
    return result


def reasons(result: BatchResult) -> list[str]:
    """Every rejected row's reasons, in row order."""
    return [str(r) for r in result.rejected["_reasons"]]


def validate_all(
    raws: list[RawBatch], validated: Path, contract: Contract, drift: DriftMeter | None = None
) -> list[dict[str, Any]]:
    """Store `raws` (in sequence order) in the validated store at `validated`; every report."""
    refresh(raws, ValidatedStore.at(validated, "test"), contract, workers=1, drift=drift)
    reports = [read_report(validated, raw.batch_id) for raw in raws]
    assert all(report is not None for report in reports)
    return [report for report in reports if report is not None]


def stored_file(validated: Path, batch_id: str, name: str) -> Path:
    """Where the validated store keeps file `name` of batch `batch_id` (this batch or the cache)."""
    record = record_of(validated, batch_id)
    assert record is not None, f"batch {batch_id} is not validated"
    return result_file(validated, record, name)


def master_after(
    tmp_path: Path, batches: list[dict[str, bytes]], contract: Contract
) -> pd.DataFrame:
    """Validate and merge `batches` in order, as the pipeline does; the master as a frame."""
    raws = [
        write_raw_batch(tmp_path / "raw" / f"b{n}", files, batch_id=f"b{n}", sequence=n)
        for n, files in enumerate(batches, start=1)
    ]
    validated = tmp_path / "validated"
    reports = validate_all(raws, validated, contract)
    empty = Manifest(contract.ref, contract.primary_key, Partitioning("range", 1000), "test")
    master = tmp_path / "master"
    refresh_master(
        master,
        reports,
        lambda batch: stored_file(validated, batch, ACCEPTED),
        MasterSpec(empty, arrow_schema(contract)),
    )
    return pd.read_parquet(master)
