"""Arrow schemas derived from a contract, and the one Parquet encoding mainstem writes.

In: a Contract, or a pandas frame / Arrow table with its schema. Out: Parquet bytes that depend only
on the data: fixed writer settings, no pandas metadata, no timestamps, so the same rows always give
the same bytes (and the same DVC hash).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mainstem.contract import Contract

_ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "datetime64[ns]": pa.timestamp("ns"),
}
_WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 1 << 20,
}


def arrow_schema(contract: Contract) -> pa.Schema:
    return pa.schema(
        [
            pa.field(name, _ARROW_TYPES[dtype], nullable=contract.nullable[name])
            for name, dtype in contract.dtypes.items()
        ]
    )


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """The frame as an Arrow table of exactly `schema`, without pandas metadata."""
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata(None)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(None), sink, **_WRITE_OPTIONS)
    return bytes(sink.getvalue().to_pybytes())


def text_schema(columns: list[str]) -> pa.Schema:
    return pa.schema([pa.field(name, pa.string()) for name in columns])
