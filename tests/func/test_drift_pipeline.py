"""Drift through the real pipeline: no reference before the first training, then a batch that
drifted from the production model's training master, named in the metrics, the batch page and
`mainstem retrain explain`; the pin is lineage, so the commit checks out clean."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mainstem.cli import main as cli
from mainstem.commands import dvc, git
from mainstem.flow.batch import process_next_batch
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from mainstem.validation.layout import REPORT_HTML, read_report


@pytest.fixture(autouse=True)
def local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "AIRFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)


def _validate_metrics(workspace: Path) -> dict[str, object]:
    return json.loads((workspace / "metrics" / "validate.json").read_text())


def test_a_drifted_batch_is_named_after_a_model_is_in_production(
    workspace: Path, deliver: Callable[[BatchSpec], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=240))
    process_next_batch(workspace, run_id="drift-1")
    first = _validate_metrics(workspace)["drift"]
    assert isinstance(first, dict)
    assert first["status"] == "no_reference"

    cli(["retrain", "run", "--workspace", str(workspace), "--threshold", "100"])
    deliver(BatchSpec(5, first_id=601, rows=120, supplier="east"))
    process_next_batch(workspace, run_id="drift-2")

    drift = _validate_metrics(workspace)["drift"]
    assert isinstance(drift, dict)
    assert drift["status"] == "drifted"
    assert drift["drifted_columns"] == "supplier"
    assert drift["columns"]["supplier"]["statistic"] == "psi"
    pin = json.loads(load_params(workspace).validate.drift_reference.read_text())
    assert drift["reference_md5"] == pin["master_md5"]
    batch = str(_validate_metrics(workspace)["last_batch_id"])
    validated = load_params(workspace).validate.validated_dir
    assert read_report(validated, batch) == json.loads(
        (validated / "batch" / "report.json").read_text()
    )
    page = (validated / "batch" / REPORT_HTML).read_text()
    assert "<svg" in page

    capsys.readouterr()
    cli(["retrain", "explain", "--workspace", str(workspace)])
    explained = capsys.readouterr().out
    assert "drifted columns supplier" in explained
    assert "retrain.drift is off" in explained

    assert git(["status", "--porcelain"], workspace).stdout.strip() == ""
    assert "up to date" in dvc(["status"], workspace).stdout
