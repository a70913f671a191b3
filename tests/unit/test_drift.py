"""Drift of a validated batch against the production model's training master.

The validated store is built from real raw batches; the reference master is laid out in a DVC
cache the way `dvc` stores a folder (a `.dir` listing and one object per part).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from mainstem.params import Params, load_params
from mainstem.validation.drift import categorical_drift, psi, wasserstein
from mainstem.validation.drift_reference import cache_object
from mainstem.validation.drift_report import drift_section, with_drift_section
from mainstem.validation.drift_store import drift_meter
from mainstem.validation.layout import ACCEPTED, REPORT_HTML, read_report, record_of
from mainstem.validation.metrics import validation_metrics
from mainstem.validation.report import CONTENT_SECURITY_POLICY
from mainstem.validation.store import ValidatedStore, refresh
from tests.unit.raw_batches import (
    ROOT,
    csv_bytes,
    png,
    row,
    stored_file,
    v1,
    validate_all,
    write_raw_batch,
)

SUPPLIERS = ["north", "south", "east", "west"]


def _rows(first: int, count: int, weight: float, suppliers: list[str]) -> list[dict[str, object]]:
    rng = np.random.default_rng(first)
    return [
        row(
            first + i,
            weight_g=round(float(rng.normal(weight, 20.0)), 3),
            diameter_mm=round(float(rng.normal(60.0, 5.0)), 3),
            supplier=suppliers[i % len(suppliers)],
            image_file=f"img{i % 8}.png",
        )
        for i in range(count)
    ]


def _files(rows: list[dict[str, object]], brightness: int = 100) -> dict[str, bytes]:
    images = {f"img{i}.png": png((32, 32), (brightness + 9 * i, brightness, 60)) for i in range(8)}
    return {"rows.csv": csv_bytes(rows), **images}


def _workspace(tmp_path: Path) -> Params:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "drift_reference.json").write_text("{}")
    return load_params(tmp_path)


def _cache_master(params: Params, accepted: Path) -> str:
    """Put `accepted` into the workspace's DVC cache as a one-part master; its `.dir` hash."""
    data = accepted.read_bytes()
    part = hashlib.md5(data).hexdigest()
    cache_object(params.root, part).parent.mkdir(parents=True, exist_ok=True)
    cache_object(params.root, part).write_bytes(data)
    listing = json.dumps([{"md5": part, "relpath": "part-000000.parquet"}]).encode()
    md5 = hashlib.md5(listing).hexdigest() + ".dir"
    cache_object(params.root, md5).parent.mkdir(parents=True, exist_ok=True)
    cache_object(params.root, md5).write_bytes(listing)
    return md5


def _pin(params: Params, md5: str) -> None:
    pin = {"model_name": "produce-grade", "version": "3", "run_id": "r1", "master_md5": md5}
    params.validate.drift_reference.write_text(json.dumps(pin))


def _store(params: Params, batches: list[dict[str, bytes]]) -> list[dict[str, object]]:
    raws = [
        write_raw_batch(params.ingest.raw_dir / f"b{n}", files, batch_id=f"b{n}", sequence=n)
        for n, files in enumerate(batches, start=1)
    ]
    return validate_all(raws, params.validate.validated_dir, v1(), drift_meter(params, v1()))


def _metrics(params: Params, reports: list[dict[str, object]]) -> dict[str, object]:
    record = record_of(params.validate.validated_dir, str(reports[-1]["batch_id"]))
    assert record is not None
    return validation_metrics("produce/v1", record.totals, reports[-1])


@pytest.fixture
def params(tmp_path: Path) -> Params:
    return _workspace(tmp_path)


def _trained_on_first_batch(params: Params, batches: list[dict[str, bytes]]) -> None:
    """Validate `batches`, then pin the first batch's accepted rows as production's master."""
    _store(params, batches[:1])
    md5 = _cache_master(params, stored_file(params.validate.validated_dir, "b1", ACCEPTED))
    _pin(params, md5)


def test_without_a_production_model_drift_says_there_is_no_reference(params: Params) -> None:
    reports = _store(params, [_files(_rows(1, 150, 120.0, SUPPLIERS))])
    drift = reports[-1]["drift"]
    assert drift["status"] == "no_reference"
    assert "no production model" in drift["message"]
    metrics = _metrics(params, reports)
    assert metrics["drift"]["status"] == "no_reference"
    assert metrics["drift"]["columns"] == {}


def test_a_batch_like_the_reference_has_no_drifted_column(params: Params) -> None:
    batches = [_files(_rows(1, 150, 120.0, SUPPLIERS)), _files(_rows(1001, 150, 120.0, SUPPLIERS))]
    _trained_on_first_batch(params, batches)
    drift = _store(params, batches)[-1]["drift"]
    assert drift["status"] == "stable"
    assert drift["drifted"] == []
    assert {c["column"] for c in drift["columns"]} >= {"weight_g", "supplier", "grade"}


def test_a_drifted_batch_names_its_column_in_the_metrics(params: Params) -> None:
    batches = [_files(_rows(1, 150, 120.0, SUPPLIERS)), _files(_rows(1001, 150, 150.0, SUPPLIERS))]
    _trained_on_first_batch(params, batches)
    metrics = _metrics(params, _store(params, batches))
    assert metrics["drift"]["status"] == "drifted"
    assert metrics["drift"]["drifted_columns"] == "weight_g"
    weight = metrics["drift"]["columns"]["weight_g"]
    assert weight["statistic"] == "wasserstein/sd"
    assert weight["drifted"] is True
    assert weight["value"] > weight["threshold"]
    assert metrics["drift"]["columns"]["supplier"]["drifted"] is False


def test_brighter_images_drift_and_a_refused_category_does_not(params: Params) -> None:
    changed = _rows(1001, 150, 120.0, [*SUPPLIERS, "far-east"])
    batches = [_files(_rows(1, 150, 120.0, SUPPLIERS)), _files(changed, brightness=150)]
    _trained_on_first_batch(params, batches)
    drifted = _store(params, batches)[-1]["drift"]["drifted"]
    assert "image_file:brightness" in drifted
    # The contract refuses a supplier outside its list, so the new category never arrives.
    assert "supplier" not in drifted


def test_the_batch_page_shows_a_chart_for_each_drifted_column(params: Params) -> None:
    batches = [_files(_rows(1, 150, 120.0, SUPPLIERS)), _files(_rows(1001, 150, 150.0, SUPPLIERS))]
    _trained_on_first_batch(params, batches)
    _store(params, batches)
    page = stored_file(params.validate.validated_dir, "b2", REPORT_HTML).read_text()
    assert CONTENT_SECURITY_POLICY in page
    assert page.count('<section id="drift">') == 1
    assert page.count("<svg") == 1
    assert "<script" not in page
    assert "weight_g" in page[page.index('<section id="drift">') :]


def test_a_new_production_model_measures_the_newest_batch_again(params: Params) -> None:
    batches = [_files(_rows(1, 150, 120.0, SUPPLIERS)), _files(_rows(1001, 150, 150.0, SUPPLIERS))]
    _trained_on_first_batch(params, batches)
    assert _store(params, batches)[-1]["drift"]["drifted"] == ["weight_g"]
    md5 = _cache_master(params, stored_file(params.validate.validated_dir, "b2", ACCEPTED))
    _pin(params, md5)
    reports = _store(params, batches)
    assert reports[-1]["drift"]["status"] == "stable"
    stored = read_report(params.validate.validated_dir, "b2")
    assert stored is not None
    assert stored["drift"]["reference"]["master_md5"] == md5
    page = stored_file(params.validate.validated_dir, "b2", REPORT_HTML).read_text()
    assert page.count('<section id="drift">') == 1
    assert "<svg" not in page


def test_an_incremental_run_and_a_rebuild_write_the_same_drift(params: Params) -> None:
    batches = [_files(_rows(1, 150, 120.0, SUPPLIERS)), _files(_rows(1001, 150, 150.0, SUPPLIERS))]
    _trained_on_first_batch(params, batches)
    _store(params, batches)
    validated = params.validate.validated_dir
    incremental = stored_file(validated, "b2", REPORT_HTML).read_bytes()
    raws = [
        write_raw_batch(params.ingest.raw_dir / f"b{n}", files, batch_id=f"b{n}", sequence=n)
        for n, files in enumerate(batches, start=1)
    ]
    rebuild = ValidatedStore.at(validated, "new code")
    refresh(raws, rebuild, v1(), workers=1, drift=drift_meter(params, v1()))
    record = record_of(validated, "b2")
    assert record is not None
    assert record.fingerprint == "new code"
    assert stored_file(validated, "b2", REPORT_HTML).read_bytes() == incremental


def test_a_reference_missing_from_the_cache_is_reported_not_raised(params: Params) -> None:
    _pin(params, "0123456789abcdef0123456789abcdef.dir")
    drift = _store(params, [_files(_rows(1, 50, 120.0, SUPPLIERS))])[-1]["drift"]
    assert drift["status"] == "reference_unavailable"
    assert "dvc fetch" in drift["message"]


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    u, v = rng.normal(0, 1, 300), rng.exponential(1, 170)
    assert wasserstein(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12)


def test_psi_counts_a_category_the_reference_never_saw() -> None:
    reference = {"a": 500, "b": 500}
    assert psi(reference, reference) == 0.0
    assert psi({"a": 450, "b": 450, "c": 100}, reference) > 0.3
    found = categorical_drift("kind", {"a": 450, "b": 450, "c": 100}, reference)
    assert found is not None
    assert found.drifted
    assert found.chart["labels"] == ["a", "b", "c"]


def test_the_drift_section_escapes_column_names_and_replaces_itself() -> None:
    drift = {
        "reference": None,
        "status": "drifted",
        "message": "<b>x</b>",
        "columns": [
            {
                "column": "<img src=x>",
                "statistic": "psi",
                "value": 0.5,
                "threshold": 0.2,
                "drifted": True,
                "chart": {"labels": ["<a>"], "reference": [1.0], "batch": [1.0]},
            }
        ],
        "drifted": ["<img src=x>"],
    }
    section = drift_section(drift)
    assert "<img src=x>" not in section
    page = b"<html><body><p>before</p>\n</body></html>"
    once = with_drift_section(page, drift)
    assert (
        with_drift_section(once, {**drift, "columns": [], "message": "calm"}).count(b"<section")
        == 1
    )
    assert with_drift_section(once, drift) == once
