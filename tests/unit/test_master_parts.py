"""A master part reads back as the rows the merge wrote, with the master's types."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from mainstem.master.parts import read_part
from mainstem.validation.columnar import parquet_bytes


def test_read_part_gives_back_the_rows_and_types_written(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            pa.field("item_id", pa.int64(), nullable=False),
            pa.field("site", pa.string(), nullable=False),
            pa.field("weight_g", pa.float64(), nullable=True),
            pa.field("inspected_at", pa.timestamp("ns"), nullable=False),
        ]
    )
    written = pa.table(
        {
            "item_id": [4, 7, 9],
            "site": ["site-01", "site-02", "site-01"],
            "weight_g": [120.5, None, 88.0],
            "inspected_at": pa.array([1, 1_000_000_001, 2], pa.timestamp("ns")),
        },
        schema=schema,
    )
    (tmp_path / "part-000000000000.parquet").write_bytes(parquet_bytes(written))

    part = read_part(tmp_path, "part-000000000000.parquet")

    assert part.schema.equals(schema)
    assert part.equals(written)
