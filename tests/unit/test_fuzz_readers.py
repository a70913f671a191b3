"""Random bytes into the image reader and the table readers: ACCEPT or REJECT, nothing else.

Any exception, hang (bounded by pytest-timeout) or crashed interpreter fails the test. Besides
plain random bytes, valid files with random bytes overwritten reach deeper into the decoders,
and CSV built from a hostile alphabet reaches the row checks.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mainstem.validation.batch import BatchResult, validate_batch
from mainstem.validation.images import canonicalize_file
from tests.unit.raw_batches import (
    COLUMNS,
    csv_bytes,
    encode,
    parquet_bytes,
    png,
    row,
    v1,
    write_raw_batch,
)

CONTRACT = v1()
RULE = CONTRACT.images[0]
FUZZ = settings(
    max_examples=80,  # keeps tests/unit under a minute; each run draws new examples
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_PIXELS = np.random.default_rng(7).integers(0, 255, (40, 40, 3), dtype=np.uint8)
SEEDS = {
    "png": encode(Image.fromarray(_PIXELS), "PNG"),
    "jpg": encode(Image.fromarray(_PIXELS), "JPEG"),
    "parquet": parquet_bytes(pa.table({c: [str(v)] for c, v in row(1).items()})),
}


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """`seed` with a few bytes overwritten and maybe cut short."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=6)

    def apply(changes: list[tuple[int, int]], keep: int) -> bytes:
        data = bytearray(seed)
        for index, value in changes:
            data[index] = value
        return bytes(data[:keep])

    return st.builds(apply, edits, st.integers(0, len(seed)))


def _scratch(tmp_path: Path) -> Path:
    """A fresh folder per example: hypothesis reuses the test's tmp_path."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


def _assert_decided(result: BatchResult) -> None:
    """ACCEPT or REJECT with reasons; what is accepted meets the contract."""
    report = json.loads(json.dumps(result.report()))
    assert report["status"] in ("accepted", "rejected")
    assert (report["status"] == "rejected") == bool(result.problems)
    assert all(result.rejected["_reasons"])
    if not result.accepted.empty:
        CONTRACT.schema.validate(result.accepted)
        assert result.accepted["item_id"].is_unique


def _validate_table(tmp_path: Path, name: str, data: bytes) -> BatchResult:
    raw = write_raw_batch(_scratch(tmp_path), {name: data, "a.png": png()})
    return validate_batch(raw, CONTRACT, workers=1)


@pytest.mark.timeout(120)
@FUZZ
@given(
    data=st.one_of(st.binary(max_size=4096), _mutated(SEEDS["png"]), _mutated(SEEDS["jpg"])),
    name=st.sampled_from(["a.png", "a.jpg", "a"]),
)
def test_random_bytes_as_an_image_are_accepted_or_refused(
    tmp_path: Path, data: bytes, name: str
) -> None:
    path = _scratch(tmp_path) / "image"
    path.write_bytes(data)
    outcome = canonicalize_file(str(path), RULE, name)
    assert outcome.ok == (outcome.reason is None)
    if outcome.ok:
        assert outcome.data is not None
        with Image.open(io.BytesIO(outcome.data)) as canonical:
            assert (canonical.format, canonical.size) == ("PNG", (64, 64))
    else:
        assert outcome.reason


@pytest.mark.timeout(120)
@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_a_csv_file_are_accepted_or_rejected(tmp_path: Path, data: bytes) -> None:
    _assert_decided(_validate_table(tmp_path, "t.csv", data))


_CELL = st.text(st.sampled_from(list('0123456789-+.eE:T naNIf"\r\n\t,=@\x00\u0661\ufeffa.png')))


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=40)  # every example reaches the full row checks: the slow path
@given(cells=st.lists(st.lists(_CELL, max_size=9), max_size=6))
def test_hostile_cells_under_a_valid_header_are_accepted_or_rejected(
    tmp_path: Path, cells: list[list[str]]
) -> None:
    text = ",".join(COLUMNS) + "\n" + "\n".join(",".join(line) for line in cells)
    _assert_decided(_validate_table(tmp_path, "t.csv", text.encode()))


@pytest.mark.timeout(120)
@FUZZ
@given(data=st.one_of(st.binary(max_size=4096), _mutated(SEEDS["parquet"])))
def test_random_bytes_as_a_parquet_file_are_accepted_or_rejected(
    tmp_path: Path, data: bytes
) -> None:
    _assert_decided(_validate_table(tmp_path, "t.parquet", data))


def test_the_seeds_are_valid_so_mutations_start_from_real_files(tmp_path: Path) -> None:
    result = _validate_table(tmp_path, "t.parquet", SEEDS["parquet"])
    assert result.accepted["item_id"].tolist() == [1]
    csv_result = _validate_table(tmp_path, "t.csv", csv_bytes([row(1)]))
    assert csv_result.accepted["item_id"].tolist() == [1]
