"""Batches that arrive in key order skip the merge's sorts and gathers, and give the same parts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from mainstem.master.merge import is_sorted_by, latest_per_key, split_by_part, upsert
from mainstem.master.parts import Partitioning
from mainstem.validation.columnar import parquet_bytes, write_parquet


def _rows(keys: list[int]) -> pa.Table:
    return pa.table(
        {"k": pa.array(keys, pa.int64()), "v": [f"row-{k}" for k in keys]},
    )


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], True),
        ([5], True),
        ([1, 2, 2, 9], True),
        ([1, 3, 2], False),
        ([9, 1], False),
    ],
)
def test_is_sorted_by_integer_keys(keys: list[int], expected: bool) -> None:
    assert is_sorted_by(_rows(keys), "k") is expected


@pytest.mark.parametrize(
    ("keys", "expected"),
    [(["a", "b", "b"], True), (["b", "a"], False), (["a", None], False)],
)
def test_is_sorted_by_text_keys(keys: list[str | None], expected: bool) -> None:
    assert is_sorted_by(pa.table({"k": pa.array(keys, pa.string())}), "k") is expected


def test_latest_per_key_keeps_rows_that_arrive_sorted_as_they_are() -> None:
    batch = _rows([3, 4, 250, 251])

    assert latest_per_key([batch], "k").equals(batch)


def test_split_of_sorted_rows_equals_split_of_the_same_rows_shuffled() -> None:
    partitioning = Partitioning("range", 100)
    in_order = _rows([1, 2, 99, 100, 150, 420, 421])
    shuffled = in_order.take(pa.array([5, 0, 3, 6, 1, 4, 2]))

    from_sorted = split_by_part(in_order, "k", partitioning)
    from_shuffled = split_by_part(shuffled, "k", partitioning)

    assert sorted(from_sorted) == [0, 1, 4]
    assert {part: rows.sort_by("k") for part, rows in from_shuffled.items()} == from_sorted


def test_upsert_with_sorted_updates_equals_upsert_with_shuffled_updates() -> None:
    existing = _rows(list(range(0, 40, 2)))
    updates = _rows([3, 4, 17, 18, 41])
    shuffled = updates.take(pa.array([4, 2, 0, 3, 1]))

    assert upsert(existing, updates, "k").equals(upsert(existing, shuffled, "k"))


def test_part_written_to_a_file_has_the_bytes_of_parquet_bytes(tmp_path: Path) -> None:
    rows = pa.concat_tables([_rows([1, 2]), _rows([3])])
    with open(tmp_path / "part.parquet", "wb") as handle:
        write_parquet(rows, handle)

    assert (tmp_path / "part.parquet").read_bytes() == parquet_bytes(rows.combine_chunks())
