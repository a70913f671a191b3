"""Read delivered CSV and Parquet files into text columns, trusting nothing about them.

In: a file's name and bytes, and the contract. Out: a TableRead whose frame has one text column per
contract column (None for an empty cell) plus `_source` ("file.csv:line 7"), the rows that are bad
already (ragged, oversized cells) with their reasons, and the problems that make the whole file
unusable (undecodable text, missing or unexpected columns, an unreadable Parquet file). Values are
converted to their declared types later, in one place, whatever format they came in.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mainstem.contract import Contract

SOURCE = "_source"
_CSV_FIELD_LIMIT = 1 << 26


@dataclass
class TableRead:
    frame: pd.DataFrame
    row_reasons: dict[int, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unusable_rows: int = 0  # data rows of a file rejected whole, counted for the report


def empty_frame(contract: Contract) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in [*contract.columns, SOURCE]})


def read_table(name: str, data: bytes, contract: Contract) -> TableRead:
    """Parse one delivered table; structural problems come back in `.problems`."""
    suffix = PurePosixPath(name).suffix.lower().lstrip(".")
    if suffix not in contract.tabular_formats:
        allowed = ", ".join(contract.tabular_formats)
        return _unusable(contract, f"{name}: .{suffix} files are not accepted (allowed: {allowed})")
    if suffix == "csv":
        return _read_csv(name, data, contract)
    return _read_parquet(name, data, contract)


def _unusable(contract: Contract, problem: str) -> TableRead:
    return TableRead(empty_frame(contract), problems=[problem])


def _header_problems(name: str, header: list[str], contract: Contract) -> list[str]:
    problems = []
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        problems.append(f"{name}: duplicated column(s) {', '.join(duplicated)}")
    missing = [c for c in contract.columns if c not in header]
    extra = [h for h in header if h not in contract.dtypes]
    if missing:
        problems.append(f"{name}: missing column(s) {', '.join(missing)}")
    if extra:
        shown = ", ".join(repr(h[:60]) for h in extra[:10])
        problems.append(f"{name}: unexpected column(s) {shown} (contract {contract.ref})")
    return problems


def _decode(name: str, data: bytes, encoding: str) -> tuple[str | None, str | None]:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # a BOM is tolerated, and removed
    try:
        return data.decode(encoding), None
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        return None, (
            f"{name}: not valid {encoding.removesuffix('-sig')} text (byte 0x{bad} at offset "
            f"{exc.start}); re-export the file as {encoding.removesuffix('-sig')}"
        )
    except LookupError:
        return None, f"contract names an unknown CSV encoding {encoding!r}"


def _read_csv(name: str, data: bytes, contract: Contract) -> TableRead:
    text, problem = _decode(name, data, contract.csv_encoding)
    if text is None:
        return _unusable(contract, problem or f"{name}: cannot be decoded")
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=contract.csv_delimiter, strict=True
    )
    records: list[list[str | None]] = []
    sources: list[str] = []
    reasons: dict[int, list[str]] = {}
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            line = start
            start = reader.line_num + 1
            if header is None:
                header = record
                problems = _header_problems(name, header, contract)
                if problems:
                    rows = sum(1 for row in reader if row)
                    return TableRead(empty_frame(contract), problems=problems, unusable_rows=rows)
                continue
            if not record:
                continue
            row_reasons = _row_shape(record, len(header), contract.max_cell_chars, header)
            if row_reasons:
                reasons[len(records)] = row_reasons
            padded = (list(record) + [""] * len(header))[: len(header)]
            records.append([_cell(value, contract.max_cell_chars) for value in padded])
            sources.append(f"{name}:line {line}")
    except csv.Error as exc:
        return _unusable(contract, f"{name}: malformed CSV near line {reader.line_num}: {exc}")
    if header is None:
        return _unusable(contract, f"{name}: the file is empty; it needs at least a header row")
    frame = pd.DataFrame(records, columns=header, dtype=object)
    frame = frame[contract.columns]
    frame[SOURCE] = sources
    return TableRead(frame, reasons)


def _row_shape(record: list[str], width: int, max_chars: int, header: list[str]) -> list[str]:
    reasons = []
    if len(record) != width:
        reasons.append(f"row has {len(record)} fields, the header has {width}")
    for column, value in zip(header, record, strict=False):
        if len(value) > max_chars:
            reasons.append(f"{column}: cell is {len(value)} characters long (max {max_chars})")
    return reasons


def _cell(value: str, max_chars: int) -> str:
    """The cell as kept for checking and reporting: oversized cells are cut (and rejected)."""
    return value if len(value) <= max_chars else value[:max_chars]


def _read_parquet(name: str, data: bytes, contract: Contract) -> TableRead:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and more for bad files
        return _unusable(contract, f"{name}: unreadable Parquet file ({type(exc).__name__}: {exc})")
    problems = _header_problems(name, table.column_names, contract)
    if problems:
        return TableRead(empty_frame(contract), problems=problems, unusable_rows=table.num_rows)
    columns: dict[str, list[str | None]] = {}
    reasons: dict[int, list[str]] = {}
    for column in contract.columns:
        array = table.column(column)
        if pa.types.is_nested(array.type) or pa.types.is_binary(array.type):
            return _unusable(contract, f"{name}: column {column} has type {array.type}, not text")
        if pa.types.is_timestamp(array.type) and array.type.tz is not None:
            array = pc.cast(array, pa.timestamp(array.type.unit))
        try:
            texts = pc.cast(array, pa.string()).to_pylist()
        except pa.ArrowException as exc:
            return _unusable(contract, f"{name}: column {column} cannot be read as text: {exc}")
        for index, value in enumerate(texts):
            if value is not None and len(value) > contract.max_cell_chars:
                reasons.setdefault(index, []).append(
                    f"{column}: cell is {len(value)} characters long "
                    f"(max {contract.max_cell_chars})"
                )
        columns[column] = [None if v is None else _cell(v, contract.max_cell_chars) for v in texts]
    frame = pd.DataFrame(columns, dtype=object)
    frame[SOURCE] = [f"{name}:row {i + 1}" for i in range(len(frame))]
    return TableRead(frame, reasons)
