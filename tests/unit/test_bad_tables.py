"""Bad tables end in ACCEPT or a REJECT that says what is wrong: one delivered file per case."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from tests.unit.raw_batches import (
    COLUMNS,
    csv_bytes,
    master_after,
    parquet_bytes,
    png,
    reasons,
    row,
    v1,
    validate_files,
    variant,
    with_note_column,
)

HEADER = ",".join(COLUMNS)
GOOD_LINE = "1,north,120.5,60.0,2024-05-01,a.png,A"


def _batch(table: bytes, name: str = "t.csv") -> dict[str, bytes]:
    return {name: table, "a.png": png()}


def _parquet(**columns: object) -> bytes:
    values: dict[str, object] = {
        "item_id": [1, 2],
        "supplier": ["north", "south"],
        "weight_g": [120.5, 300.0],
        "diameter_mm": [60.0, None],
        "harvested_on": ["2024-05-01", "2024-05-02"],
        "image_file": ["a.png", "a.png"],
        "grade": ["A", "B"],
    }
    values.update(columns)
    return parquet_bytes(pa.table(values))


# ragged rows


def test_short_csv_row_is_rejected_not_filled_with_nan(tmp_path: Path) -> None:
    table = f"{HEADER}\n{GOOD_LINE}\n2,south,300\n".encode()
    result = validate_files(tmp_path, _batch(table))
    assert result.status == "accepted"
    assert result.accepted["item_id"].tolist() == [1]
    assert "row has 3 fields, the header has 7" in reasons(result)[0]


def test_long_csv_row_is_rejected(tmp_path: Path) -> None:
    table = f"{HEADER}\n{GOOD_LINE}\n2,south,300,70,2024-05-02,a.png,B,surplus\n".encode()
    result = validate_files(tmp_path, _batch(table))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == ["row has 8 fields, the header has 7"]


# encodings and line ends


def test_csv_in_another_encoding_rejects_the_file_naming_the_byte(tmp_path: Path) -> None:
    text = f"{HEADER}\n1,north,120.5,60.0,2024-05-01,a.png,A\n2,söuth,1,1,2024-05-01,a.png,A\n"
    data = text.encode("latin-1")
    offset = data.index("ö".encode("latin-1"))
    result = validate_files(tmp_path, _batch(data))
    assert result.status == "rejected"
    assert result.problems == [
        f"t.csv: not valid utf-8 text (byte 0xf6 at offset {offset}); re-export the file as utf-8"
    ]
    assert result.accepted.empty


def test_utf16_csv_is_rejected_as_utf16(tmp_path: Path) -> None:
    data = f"{HEADER}\n{GOOD_LINE}\n".encode("utf-16")
    result = validate_files(tmp_path, _batch(data))
    assert result.problems == ["t.csv: the file is UTF-16 text; re-export it as utf-8"]


def test_csv_in_another_encoding_counts_its_rows_in(tmp_path: Path) -> None:
    text = f"{HEADER}\n1,nörth,120.5,60.0,2024-05-01,a.png,A\n2,söuth,1,1,2024-05-01,a.png,A\n"
    result = validate_files(tmp_path, _batch(text.encode("latin-1")))
    assert result.status == "rejected"
    assert (result.report()["rows_in"], result.report()["rows_rejected"]) == (2, 2)


def test_utf16_csv_counts_its_rows_in(tmp_path: Path) -> None:
    data = f"{HEADER}\n{GOOD_LINE}\n2,south,1,1,2024-05-01,a.png,A\n".encode("utf-16")
    result = validate_files(tmp_path, _batch(data))
    assert result.status == "rejected"
    assert result.rows_in == 2


def test_csv_with_a_bom_is_read_without_it(tmp_path: Path) -> None:
    data = f"\ufeff{HEADER}\n{GOOD_LINE}\n".encode()
    result = validate_files(tmp_path, _batch(data))
    assert result.status == "accepted"
    assert result.accepted["item_id"].tolist() == [1]


def test_crlf_line_ends_leave_no_carriage_return_in_cells(tmp_path: Path) -> None:
    data = f"{HEADER}\r\n{GOOD_LINE}\r\n".encode()
    result = validate_files(tmp_path, _batch(data))
    assert result.status == "accepted"
    assert result.accepted["grade"].tolist() == ["A"]


def test_newline_inside_a_quoted_field_is_kept_and_later_lines_keep_their_numbers(
    tmp_path: Path,
) -> None:
    contract = variant(tmp_path, with_note_column)
    rows = [row(1, note="first line\nsecond line"), row(2, grade="Z", note="")]
    result = validate_files(tmp_path / "batch", _batch(csv_bytes(rows)), contract)
    assert result.accepted["note"].tolist() == ["first line\nsecond line"]
    assert result.rejected["_source"].tolist() == ["t.csv:line 4"]


# formula-like cells


def test_cells_that_look_like_formulas_reach_the_master_byte_exact(tmp_path: Path) -> None:
    contract = variant(tmp_path, with_note_column)
    notes = ["=1+2", "+SUM(A1:A9)", "-2+3", "@cmd|' /C calc'!A0", '=HYPERLINK("http://x","y")']
    rows = [row(i, note=note) for i, note in enumerate(notes, start=1)]
    master = master_after(tmp_path, [_batch(csv_bytes(rows))], contract)
    assert master["note"].tolist() == notes


# types


def test_text_in_a_number_column_rejects_the_row(tmp_path: Path) -> None:
    rows = [row(1), row(2, weight_g="heavy"), row("3a")]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == [
        "weight_g: 'heavy' is not a finite number",
        "item_id: '3a' is not an integer within the int64 range",
    ]


def test_integers_that_parquet_stored_as_float_are_read_as_integers(tmp_path: Path) -> None:
    table = _parquet(item_id=pa.array([1.0, 2.0], pa.float64()))
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert result.accepted["item_id"].tolist() == [1, 2]
    assert str(result.accepted["item_id"].dtype) == "int64"


def test_nan_in_a_parquet_int_column_rejects_that_row_not_as_zero(tmp_path: Path) -> None:
    table = _parquet(item_id=pa.array([1.0, float("nan")], pa.float64()))
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == ["item_id: a value is required"]


def test_digits_of_other_scripts_are_not_read_as_a_key(tmp_path: Path) -> None:
    arabic_indic, full_width = "\u0661\u0662", "\uff11\uff12"  # both read as 12 by int()
    rows = [row(12), row(arabic_indic), row(full_width)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [12]
    assert len(reasons(result)) == 2
    assert all("is not an integer" in reason for reason in reasons(result))


# keys


@pytest.mark.parametrize("missing", ["", "NULL", "NaN", "  "])
def test_a_row_without_a_key_is_rejected(tmp_path: Path, missing: str) -> None:
    rows = [row(1), row(missing)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == ["item_id: a value is required"]


def test_a_key_twice_in_one_batch_rejects_both_rows(tmp_path: Path) -> None:
    rows = [row(1, grade="A"), row(1, grade="B"), row(2)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [2]
    assert reasons(result) == ["item_id: 1 appears 2 times in this batch"] * 2


def test_a_key_twice_in_one_batch_keeps_the_last_under_keep_last(tmp_path: Path) -> None:
    contract = variant(
        tmp_path, lambda doc: doc["contract"].update(duplicate_keys_in_batch="keep_last")
    )
    rows = [row(1, grade="A"), row(1, grade="B")]
    result = validate_files(tmp_path / "batch", _batch(csv_bytes(rows)), contract)
    assert result.accepted["grade"].tolist() == ["B"]


def test_a_key_already_in_the_master_is_replaced_by_the_later_batch(tmp_path: Path) -> None:
    first = _batch(csv_bytes([row(1, grade="A"), row(2, grade="A")]))
    second = _batch(csv_bytes([row(2, grade="C")]))
    master = master_after(tmp_path, [first, second], v1())
    assert master[["item_id", "grade"]].values.tolist() == [[1, "A"], [2, "C"]]


# columns


def test_an_extra_column_rejects_the_batch_naming_it(tmp_path: Path) -> None:
    rows = [row(1, colour="red")]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.status == "rejected"
    assert result.problems == ["t.csv: unexpected column(s) 'colour' (contract produce/v1)"]
    assert result.rows_in == 1


def test_a_missing_column_rejects_the_batch_naming_it(tmp_path: Path) -> None:
    rows = [row(1)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows, COLUMNS[:-1])))
    assert result.problems == ["t.csv: missing column(s) grade"]


def test_a_renamed_column_is_named_with_the_rename_to_make(tmp_path: Path) -> None:
    data = f"{HEADER.replace('grade', ' Grade')}\n{GOOD_LINE}\n".encode()
    result = validate_files(tmp_path, _batch(data))
    assert result.status == "rejected"
    assert "t.csv: rename column ' Grade' to 'grade'" in result.problems


# sizes and values


def test_a_huge_cell_rejects_its_row_and_is_not_stored_whole(tmp_path: Path) -> None:
    rows = [row(1), row(2, supplier="x" * 200_000)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result)[0].startswith("supplier: cell is 200000 characters long (max 4096)")
    assert len(result.rejected["supplier"].iat[0]) == 4096


def test_a_huge_parquet_cell_rejects_its_row(tmp_path: Path) -> None:
    table = _parquet(grade=["A", "B" * 100_000])
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result)[0].startswith("grade: cell is 100000 characters long (max 4096)")


def _huge_link() -> str:
    """A 4.5 MB link with a comma, so the CSV writer quotes it."""
    return "photos/" + "x," * 2_250_000 + ".png"


def _short(reason: object) -> bool:
    return len(str(reason)) < 300


def test_a_huge_quoted_link_rejects_its_row_not_the_batch(tmp_path: Path) -> None:
    rows = [row(1), row(2, image_file=_huge_link()), row(3)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert (result.status, result.problems) == ("accepted", [])
    assert result.accepted["item_id"].tolist() == [1, 3]
    assert reasons(result) == [
        f"image_file: cell is {len(_huge_link())} characters long (max 4096)"
    ]
    report = result.report()
    assert all(_short(case["value"]) for case in report["failure_cases"])


def test_a_huge_parquet_link_rejects_its_row_not_the_batch(tmp_path: Path) -> None:
    table = _parquet(image_file=["a.png", _huge_link()])
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert (result.status, result.problems) == ("accepted", [])
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == [
        f"image_file: cell is {len(_huge_link())} characters long (max 4096)"
    ]


def test_a_huge_number_cell_is_rejected_once_for_its_length(tmp_path: Path) -> None:
    rows = [row(1), row(2, weight_g="9" * 10_000)]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == ["weight_g: cell is 10000 characters long (max 4096)"]


def test_a_long_link_to_a_missing_file_is_quoted_in_short(tmp_path: Path) -> None:
    link = "photos/" + "y" * 4000 + ".png"
    result = validate_files(tmp_path, _batch(csv_bytes([row(1), row(2, image_file=link)])))
    assert result.status == "rejected"
    (problem,) = result.problems
    assert problem == (
        f"t.csv:line 3: image_file: links to {link[:80]!r}... ({len(link)} chars), "
        "which is not in the batch"
    )
    assert all(_short(reason) for reason in reasons(result))


@pytest.mark.parametrize("value", ["inf", "-Infinity", "1e5000"])
def test_infinity_in_a_number_column_rejects_the_row(tmp_path: Path, value: str) -> None:
    result = validate_files(tmp_path, _batch(csv_bytes([row(1), row(2, weight_g=value)])))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == [f"weight_g: {value!r} is not a finite number"]


def test_infinity_in_a_parquet_float_column_rejects_the_row(tmp_path: Path) -> None:
    table = _parquet(weight_g=[120.5, float("inf")])
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert reasons(result) == ["weight_g: 'inf' is not a finite number"]


def test_nan_is_a_missing_value(tmp_path: Path) -> None:
    rows = [row(1, diameter_mm="NaN"), row(2, weight_g="NaN")]
    result = validate_files(tmp_path, _batch(csv_bytes(rows)))
    assert result.accepted["item_id"].tolist() == [1]
    assert result.accepted["diameter_mm"].isna().tolist() == [True]
    assert reasons(result) == ["weight_g: a value is required"]


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "2024-02-30"])
def test_a_date_outside_the_calendar_or_timestamp_range_rejects_the_row(
    tmp_path: Path, day: str
) -> None:
    result = validate_files(tmp_path, _batch(csv_bytes([row(1), row(2, harvested_on=day)])))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result)[0].startswith(f"harvested_on: {day!r} is not a date")


def test_a_parquet_date_outside_the_timestamp_range_rejects_the_row(tmp_path: Path) -> None:
    days = pa.array([dt.date(2024, 5, 1), dt.date(9999, 12, 31)], pa.date32())
    result = validate_files(tmp_path, _batch(_parquet(harvested_on=days), "t.parquet"))
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result)[0].startswith("harvested_on: '9999-12-31' is not a date")


def test_a_date_outside_the_contract_range_rejects_the_row(tmp_path: Path) -> None:
    result = validate_files(tmp_path, _batch(csv_bytes([row(1, harvested_on="1999-12-31")])))
    assert reasons(result) == [
        "harvested_on: '1999-12-31 00:00:00' fails in_range(2000-01-01, 2099-12-31)"
    ]


# empty files


def test_an_empty_csv_rejects_the_batch(tmp_path: Path) -> None:
    result = validate_files(tmp_path, _batch(b""))
    assert result.problems == ["t.csv: the file is empty; it needs at least a header row"]


def test_a_header_only_csv_rejects_the_batch(tmp_path: Path) -> None:
    result = validate_files(tmp_path, _batch(f"{HEADER}\n".encode()))
    assert result.status == "rejected"
    assert result.problems == [
        "the batch's tables hold no data rows, only headers; deliver the rows"
    ]


def test_a_parquet_file_with_no_rows_rejects_the_batch(tmp_path: Path) -> None:
    table = parquet_bytes(pa.table({c: pa.array([], pa.string()) for c in COLUMNS}))
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert result.status == "rejected"


def test_a_blank_first_line_is_named_as_a_missing_header(tmp_path: Path) -> None:
    result = validate_files(tmp_path, _batch(f"\n{HEADER}\n{GOOD_LINE}\n".encode()))
    assert result.problems == [
        "t.csv: the first line is blank; it must be the header naming the columns"
    ]


def test_an_unterminated_quote_rejects_the_file_naming_the_line(tmp_path: Path) -> None:
    data = f'{HEADER}\n{GOOD_LINE}\n2,"south,1,1,2024-05-01,a.png,A\n'.encode()
    result = validate_files(tmp_path, _batch(data))
    assert result.status == "rejected"
    assert result.problems[0].startswith("t.csv: malformed CSV near line 3")
    assert result.rows_in == 2


# parquet schemas


def test_a_parquet_file_of_another_schema_rejects_the_batch(tmp_path: Path) -> None:
    other = parquet_bytes(pa.table({"order": [1, 2], "customer": ["x", "y"]}))
    result = validate_files(tmp_path, _batch(other, "t.parquet"))
    assert result.status == "rejected"
    assert result.problems[0] == f"t.parquet: missing column(s) {', '.join(COLUMNS)}"
    assert "unexpected column(s) 'order', 'customer'" in result.problems[1]
    assert result.rows_in == 2


def test_parquet_columns_of_other_types_are_converted_per_cell(tmp_path: Path) -> None:
    table = _parquet(
        item_id=pa.array(["1", "2"]),
        weight_g=pa.array(["120.5", "heavy"]),
        harvested_on=pa.array([dt.datetime(2024, 5, 1, 8, 30)] * 2, pa.timestamp("us")),
    )
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert result.accepted["item_id"].tolist() == [1]
    assert str(result.accepted["harvested_on"].iat[0]) == "2024-05-01 08:30:00"
    assert reasons(result) == ["weight_g: 'heavy' is not a finite number"]


def test_a_binary_parquet_column_rejects_the_batch(tmp_path: Path) -> None:
    table = _parquet(grade=pa.array([b"A", b"\xff"], pa.binary()))
    result = validate_files(tmp_path, _batch(table, "t.parquet"))
    assert result.problems == ["t.parquet: column grade has type binary, not text"]
    assert result.rows_in == 2


def test_two_parquet_files_of_different_types_are_read_alike(tmp_path: Path) -> None:
    files = {
        "a.parquet": _parquet(item_id=[1, 2]),
        "b.parquet": _parquet(item_id=pa.array(["3", "4"]), weight_g=pa.array(["1.5", "2"])),
        "a.png": png(),
    }
    result = validate_files(tmp_path, files)
    assert result.accepted["item_id"].tolist() == [1, 2, 3, 4]


def test_a_truncated_parquet_file_rejects_the_batch(tmp_path: Path) -> None:
    data = _parquet()
    result = validate_files(tmp_path, _batch(data[: len(data) // 2], "t.parquet"))
    assert result.status == "rejected"
    assert result.problems[0].startswith("t.parquet: unreadable Parquet file")


def test_a_parquet_file_declaring_more_rows_than_allowed_is_not_decoded(tmp_path: Path) -> None:
    contract = variant(tmp_path, lambda doc: doc["contract"].update(max_rows=3))
    table = _parquet(
        item_id=list(range(5)),
        supplier=["north"] * 5,
        weight_g=[1.5] * 5,
        diameter_mm=[None] * 5,
        harvested_on=["2024-05-01"] * 5,
        image_file=["a.png"] * 5,
        grade=["A"] * 5,
    )
    result = validate_files(tmp_path / "batch", _batch(table, "t.parquet"), contract)
    assert result.problems == [
        "t.parquet: 5 data rows, more than the contract's max_rows 3; "
        "split the delivery into several batches"
    ]


def test_a_duplicated_column_rejects_the_batch(tmp_path: Path) -> None:
    data = f"{HEADER},grade\n{GOOD_LINE},B\n".encode()
    result = validate_files(tmp_path, _batch(data))
    assert result.problems == ["t.csv: duplicated column(s) 'grade'"]


@pytest.mark.timeout(20)
def test_a_header_of_a_hundred_thousand_columns_is_rejected_in_short(tmp_path: Path) -> None:
    header = ",".join(f"c{i % 50_000}" for i in range(100_000))
    result = validate_files(tmp_path, _batch(f"{header}\n".encode()))
    assert result.status == "rejected"
    assert result.problems[0].endswith("'c10004' and 49990 more")
    assert result.problems[2].endswith("'c9' and 99990 more (contract produce/v1)")
