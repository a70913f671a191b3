"""Deterministic sample deliveries for the demo, the tests and the benchmarks.

In: a batch number, the id range and what to spoil. Out: a folder with a CSV or Parquet file of
fruit inspections and the photos its rows link to, exactly as a producer would deliver it; or,
for the regression example `costs`, a CSV of construction projects and their cost. The same
arguments always give the same bytes. The grade depends on weight, size and the photo's colour, so
a model trained on the master learns something real.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mainstem.errors import MainstemError

COLUMNS = ["item_id", "supplier", "weight_g", "diameter_mm", "harvested_on", "image_file", "grade"]
SUPPLIERS = ["north", "south", "east", "west"]
_RIPE, _UNRIPE = np.array([70.0, 170.0, 60.0]), np.array([150.0, 90.0, 40.0])


@dataclass(frozen=True)
class BatchSpec:
    number: int
    first_id: int
    rows: int
    table_format: str = "csv"
    bad_rows: int = 0
    bad_images: int = 0
    loose_rows: int = 0  # valid under contract v1, rejected by the stricter v2
    drop_column: str | None = None
    image_size: int = 96
    supplier: str | None = None  # every row from this one supplier: a batch that drifted

    @property
    def name(self) -> str:
        return f"batch-{self.number:03d}"


def _grade(weight: float, diameter: float, ripeness: float) -> str:
    score = 0.004 * weight + 0.02 * diameter + 2.0 * ripeness
    return "A" if score > 5.1 else "B" if score > 4.0 else "C"


def _image(ripeness: float, rng: np.random.Generator, size: int) -> Image.Image:
    """A photo whose colour says how ripe the fruit is, under lighting that varies per photo."""
    lighting = rng.normal(0.0, 22.0, size=3)
    base = _UNRIPE + (_RIPE - _UNRIPE) * ripeness + lighting
    noise = rng.normal(0.0, 18.0, size=(size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _supplier(spec: BatchSpec, rng: np.random.Generator) -> str:
    """A random supplier, or the batch's one; drawn either way, so the other values stay put."""
    drawn = SUPPLIERS[int(rng.integers(0, 4))]
    return spec.supplier or drawn


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def make_batch(dest: Path, spec: BatchSpec) -> Path:
    """Write the delivery described by `spec` into `dest` (created if needed)."""
    rng = np.random.default_rng(spec.number)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(exist_ok=True)
    records: list[dict[str, object]] = []
    for offset in range(spec.rows):
        item_id = spec.first_id + offset
        weight = float(np.round(rng.uniform(80, 900), 1))
        diameter = float(np.round(rng.uniform(40, 120), 1))
        ripeness = float(rng.uniform(0.0, 1.0))
        grade = _grade(weight, diameter, ripeness)
        day = int(rng.integers(0, 1500))
        harvested = str(np.datetime64("2021-01-01") + np.timedelta64(day, "D"))
        fmt = "PNG" if offset % 2 == 0 else "JPEG"
        image_name = f"images/{item_id}.{'png' if fmt == 'PNG' else 'jpg'}"
        (dest / image_name).write_bytes(_encode(_image(ripeness, rng, spec.image_size), fmt))
        records.append(
            {
                "item_id": item_id,
                "supplier": _supplier(spec, rng),
                "weight_g": weight,
                "diameter_mm": diameter,
                "harvested_on": harvested,
                "image_file": image_name,
                "grade": grade,
                "_ripeness": ripeness,
            }
        )
    _spoil_rows(records, spec)
    _spoil_images(dest, records, spec)
    _loosen_rows(dest, records, spec, rng)
    columns = [c for c in COLUMNS if c != spec.drop_column]
    if spec.table_format == "parquet":
        table = pa.table({c: [r[c] for r in records] for c in columns})
        pq.write_table(table, dest / f"{spec.name}.parquet")
    else:
        with open(dest / f"{spec.name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows([[r[c] for c in columns] for r in records])
    return dest


def _spoil_rows(records: list[dict[str, object]], spec: BatchSpec) -> None:
    """Typical producer mistakes, cycling through a fixed list."""
    mistakes = [
        ("weight_g", -5.0),
        ("grade", "Z"),
        ("harvested_on", "2024-02-30"),
        ("supplier", None),
        ("weight_g", "heavy"),
    ]
    for index in range(min(spec.bad_rows, len(records))):
        column, value = mistakes[index % len(mistakes)]
        records[1 + 3 * index][column] = value


def _spoil_images(dest: Path, records: list[dict[str, object]], spec: BatchSpec) -> None:
    for index in range(min(spec.bad_images, len(records))):
        path = dest / str(records[-1 - 2 * index]["image_file"])
        data = path.read_bytes()
        path.write_bytes(b"" if index % 2 else data[: len(data) // 2])


def _loosen_rows(
    dest: Path, records: list[dict[str, object]], spec: BatchSpec, rng: np.random.Generator
) -> None:
    """Rows inside contract v1's ranges, outside v2's: light fruit, old harvests, small photos."""
    for index in range(min(spec.loose_rows, len(records))):
        record = records[2 + 4 * index]
        kind = index % 3
        if kind == 0:
            record["weight_g"] = 30.0
        elif kind == 1:
            record["harvested_on"] = "2015-06-01"
        else:
            path = dest / str(record["image_file"])
            fmt = "PNG" if path.suffix == ".png" else "JPEG"
            ripeness = float(str(record["_ripeness"]))
            path.write_bytes(_encode(_image(ripeness, rng, 32), fmt))


def demo_batches() -> list[BatchSpec]:
    """The demo's first pass: two good batches, one whole-batch reject, one more good batch."""
    return [
        BatchSpec(1, first_id=1, rows=240, bad_rows=5, bad_images=2, loose_rows=30),
        BatchSpec(2, first_id=201, rows=240, table_format="parquet", bad_rows=3, loose_rows=24),
        BatchSpec(3, first_id=441, rows=60, drop_column="grade"),
        BatchSpec(4, first_id=441, rows=160, bad_rows=2, bad_images=1, loose_rows=16),
    ]


def second_pass_batches() -> list[BatchSpec]:
    """The demo's second pass: a small batch (below the retrain threshold) that drifted, as all
    of it came from one supplier, then a large one."""
    return [
        BatchSpec(5, first_id=601, rows=120, bad_rows=1, loose_rows=8, supplier="east"),
        BatchSpec(6, first_id=721, rows=360, table_format="parquet", bad_rows=2, loose_rows=20),
    ]


COST_COLUMNS = ["project_ref", "region", "building_type", "floor_area_m2", "storeys", "cost_keur"]
_REGIONS = ["north", "south", "east", "west"]
_BUILDING_TYPES = {"house": 1.6, "office": 2.2, "warehouse": 0.9}  # k€ per m² before extras


def make_cost_batch(dest: Path, number: int, first: int, rows: int) -> Path:
    """A delivery of the regression example: construction projects and what they cost.

    The cost follows the floor area, the storeys, the building type and the region, with noise,
    so a regression model trained on the master learns something real. No images.
    """
    rng = np.random.default_rng(1000 + number)
    dest.mkdir(parents=True, exist_ok=True)
    types = list(_BUILDING_TYPES)
    with open(dest / f"batch-{number:03d}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COST_COLUMNS)
        for offset in range(rows):
            region = _REGIONS[int(rng.integers(0, 4))]
            kind = types[int(rng.integers(0, 3))]
            area = float(np.round(rng.uniform(60, 4000), 1))
            storeys = int(rng.integers(1, 9))
            cost = area * _BUILDING_TYPES[kind] * (1 + 0.05 * storeys)
            cost *= 1.15 if region == "south" else 1.0
            cost = float(np.round(cost + rng.normal(0.0, 40.0), 1))
            writer.writerow([f"P-{first + offset:06d}", region, kind, area, storeys, cost])
    return dest


def write_samples(dataset: str, out: Path) -> list[Path]:
    """The sample batches of an example dataset, one folder each under `out`."""
    if dataset == "produce":
        return [make_batch(out / spec.name, spec) for spec in demo_batches()]
    if dataset == "costs":
        spans = [(1, 1, 240), (2, 241, 240), (3, 481, 200)]
        return [make_cost_batch(out / f"batch-{n:03d}", n, first, rows) for n, first, rows in spans]
    raise MainstemError(f"no sample batches for dataset {dataset!r}; known: produce, costs")
