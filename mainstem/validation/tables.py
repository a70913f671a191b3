"""Read delivered CSV and Parquet files into text columns, trusting nothing about them.

In: a file's name and bytes, and the contract. Out: a TableRead whose frame has one text column per
contract column (None for an empty cell) plus `_source` ("file.csv:line 7"), the rows that are bad
already (ragged, oversized cells) with their reasons, the cells cut short, and the problems that
make the whole file unusable (undecodable text, missing or unexpected columns, an unreadable
Parquet file, more rows than the contract's max_rows, counted from a Parquet footer before any data
is decoded). The data rows of a file rejected whole are still counted, for the report's rows_in.
Values are converted to their declared types later, in one place, whatever format they came in.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mainstem.validation.contract import Contract

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

SOURCE = "_source"
_CSV_FIELD_LIMIT = 1 << 26
# UTF-32 first: its little-endian mark begins with UTF-16's.
_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


@dataclass
class TableRead:
    frame: pd.DataFrame
    row_reasons: dict[int, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unusable_rows: int = 0  # data rows of a file rejected whole, counted for the report
    cut: set[tuple[int, str]] = field(default_factory=set)  # (row, column) cells cut to the limit


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


def _unusable(contract: Contract, problem: str, rows: int = 0) -> TableRead:
    return TableRead(empty_frame(contract), problems=[problem], unusable_rows=rows)


def _header_problems(name: str, header: list[str], contract: Contract) -> list[str]:
    problems = []
    if not any(h.strip() for h in header):
        return [f"{name}: the first line is blank; it must be the header naming the columns"]
    counts = Counter(header)  # not header.count(): a header of 100,000 names must not stall
    duplicated = sorted(h for h, n in counts.items() if n > 1)
    if duplicated:
        problems.append(f"{name}: duplicated column(s) {_listed(duplicated)}")
    missing = [c for c in contract.columns if c not in counts]
    extra = [h for h in header if h not in contract.dtypes]
    if missing:
        problems.append(f"{name}: missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"{name}: unexpected column(s) {_listed(extra)} (contract {contract.ref})")
    problems.extend(f"{name}: {hint}" for hint in _rename_hints(missing, extra))
    return problems


def _listed(names: list[str], limit: int = 10) -> str:
    """The first names, quoted and cut short, and how many more: a header can be huge."""
    shown = ", ".join(repr(h[:60]) for h in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _rename_hints(missing: list[str], extra: list[str]) -> list[str]:
    """Say which unexpected column is a missing one under another spelling, so the fix is plain."""
    by_loose = {_loose(h): h for h in extra}
    return [
        f"rename column {by_loose[_loose(c)]!r} to {c!r}" for c in missing if _loose(c) in by_loose
    ]


def _loose(column: str) -> str:
    folded = unicodedata.normalize("NFKC", column).casefold().strip()
    return re.sub(r"[\s_-]+", "_", folded)


def _decode(name: str, data: bytes, encoding: str) -> tuple[str | None, str | None]:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # a BOM is tolerated, and removed
    wanted = encoding.removesuffix("-sig")
    try:
        return data.decode(encoding), None
    except UnicodeDecodeError as exc:
        other = next((kind for bom, kind in _OTHER_BOMS if data.startswith(bom)), None)
        if other is not None:
            return None, f"{name}: the file is {other} text; re-export it as {wanted}"
        bad = data[exc.start : exc.start + 1].hex()
        return None, (
            f"{name}: not valid {wanted} text (byte 0x{bad} at offset {exc.start}); "
            f"re-export the file as {wanted}"
        )
    except LookupError:
        return None, f"contract names an unknown CSV encoding {encoding!r}"


def _read_csv(name: str, data: bytes, contract: Contract) -> TableRead:
    text, problem = _decode(name, data, contract.csv_encoding)
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    if text is None:
        rows = _count_records(_lenient_text(data, contract.csv_encoding), contract)
        return _unusable(contract, problem or f"{name}: cannot be decoded", rows)
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=contract.csv_delimiter, strict=True
    )
    try:
        return _parse_csv(name, reader, contract)
    except csv.Error as exc:
        return _unusable(
            contract,
            f"{name}: malformed CSV near line {reader.line_num}: {exc}; check the quoting there",
            _count_records(text, contract),
        )


def _lenient_text(data: bytes, encoding: str) -> str:
    """Text that is not valid in `encoding`, with each bad byte replaced, for counting its rows.

    Delimiters, quotes and line ends are ASCII, so replacing the bytes that do not decode leaves
    the records where the producer put them. A UTF-16 or UTF-32 file is read as what its byte
    order mark says it is.
    """
    other = next((kind for bom, kind in _OTHER_BOMS if data.startswith(bom)), None)
    try:
        return data.decode(other or encoding, errors="replace")
    except LookupError:  # the contract's encoding is unknown: reported as its own problem
        return data.decode("utf-8", errors="replace")


def _count_records(text: str, contract: Contract) -> int:
    """The data rows of a file rejected whole, read leniently: the report's rows_in counts them."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=contract.csv_delimiter)
    try:
        next(reader, None)  # the header
    except csv.Error:
        return 0
    return _count(reader)


def _parse_csv(name: str, reader: CsvReader, contract: Contract) -> TableRead:
    header = next(reader, None)
    if header is None:
        return _unusable(contract, f"{name}: the file is empty; it needs at least a header row")
    problems = _header_problems(name, header, contract)
    if problems:
        return TableRead(empty_frame(contract), problems=problems, unusable_rows=_count(reader))
    records: list[list[str | None]] = []
    sources: list[str] = []
    reasons: dict[int, list[str]] = {}
    cut: set[tuple[int, str]] = set()
    start = reader.line_num + 1
    for record in reader:
        line, start = start, reader.line_num + 1  # a quoted field may span several lines
        if not record:
            continue
        if len(records) == contract.max_rows:
            return _too_many_rows(name, contract, len(records) + 1 + _count(reader))
        row_reasons, long = _row_shape(record, len(header), contract.max_cell_chars, header)
        if row_reasons:
            reasons[len(records)] = row_reasons
        cut.update((len(records), column) for column in long)
        padded = (list(record) + [""] * len(header))[: len(header)]
        records.append([_cell(value, contract.max_cell_chars) for value in padded])
        sources.append(f"{name}:line {line}")
    frame = pd.DataFrame(records, columns=header, dtype=object)
    frame = frame[contract.columns]
    frame[SOURCE] = sources
    return TableRead(frame, reasons, cut=cut)


def _count(reader: CsvReader) -> int:
    """The data rows left in `reader`, for the report of a file rejected whole."""
    rows = 0
    try:
        for record in reader:
            rows += bool(record)
    except csv.Error:
        pass  # the file is rejected already; the count is only informative
    return rows


def _too_many_rows(name: str, contract: Contract, rows: int) -> TableRead:
    problem = (
        f"{name}: {rows} data rows, more than the contract's max_rows {contract.max_rows}; "
        "split the delivery into several batches"
    )
    return TableRead(empty_frame(contract), problems=[problem], unusable_rows=rows)


def _row_shape(
    record: list[str], width: int, max_chars: int, header: list[str]
) -> tuple[list[str], list[str]]:
    """Why a record is malformed, and the columns whose cells are too long to keep whole."""
    reasons = []
    if len(record) != width:
        reasons.append(f"row has {len(record)} fields, the header has {width}")
    long = {c: len(v) for c, v in zip(header, record, strict=False) if len(v) > max_chars}
    reasons.extend(_too_long(column, length, max_chars) for column, length in long.items())
    return reasons, list(long)


def _too_long(column: str, length: int, max_chars: int) -> str:
    return f"{column}: cell is {length} characters long (max {max_chars})"


def _cell(value: str, max_chars: int) -> str:
    """The cell as kept for checking and reporting: oversized cells are cut (and rejected)."""
    return value if len(value) <= max_chars else value[:max_chars]


def _read_parquet(name: str, data: bytes, contract: Contract) -> TableRead:
    # The row count comes from the footer before any data is decoded: a few kilobytes of
    # run-length encoded Parquet can expand to billions of rows.
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        rows = parquet.metadata.num_rows
        header = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and more for bad files
        return _unusable(contract, _unreadable_parquet(name, exc))
    if rows > contract.max_rows:
        return _too_many_rows(name, contract, rows)
    problems = _header_problems(name, header, contract)
    if problems:
        return TableRead(empty_frame(contract), problems=problems, unusable_rows=rows)
    try:
        table = parquet.read(columns=contract.columns)
    except Exception as exc:
        return _unusable(contract, _unreadable_parquet(name, exc))
    columns: dict[str, list[str | None]] = {}
    read = TableRead(empty_frame(contract))
    limit = contract.max_cell_chars
    for column in contract.columns:
        texts, long, problem = _column_texts(name, column, table.column(column), limit)
        if texts is None:
            unreadable = problem or f"{name}: column {column} cannot be read"
            return TableRead(empty_frame(contract), problems=[unreadable], unusable_rows=rows)
        columns[column] = texts
        for index, length in long:
            read.row_reasons.setdefault(index, []).append(_too_long(column, length, limit))
            read.cut.add((index, column))
    read.frame = pd.DataFrame(columns, dtype=object)
    read.frame[SOURCE] = [f"{name}:row {i + 1}" for i in range(len(read.frame))]
    return read


def _unreadable_parquet(name: str, exc: Exception) -> str:
    return (
        f"{name}: unreadable Parquet file ({type(exc).__name__}: {exc}); "
        "re-export it, or deliver it as CSV"
    )


def _column_texts(
    name: str, column: str, array: pa.ChunkedArray, limit: int
) -> tuple[list[str | None] | None, list[tuple[int, int]], str | None]:
    """A Parquet column as text cells, and the (row, length) of each cell cut to `limit`.

    Oversized cells are cut in Arrow, before Python sees them.
    """
    if pa.types.is_nested(array.type) or pa.types.is_binary(array.type):
        return None, [], f"{name}: column {column} has type {array.type}, not text"
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        array = pc.cast(array, pa.timestamp(array.type.unit))
    try:
        texts = pc.cast(array, pa.string())
        lengths = pc.fill_null(pc.utf8_length(texts), 0).to_numpy()
        texts = pc.utf8_slice_codeunits(texts, 0, limit)
    except pa.ArrowException as exc:
        return None, [], f"{name}: column {column} cannot be read as text: {exc}"
    long = [(int(i), int(lengths[i])) for i in np.flatnonzero(lengths > limit)]
    return texts.to_pylist(), long, None
