"""`mainstem retrain explain` from flags: the report, the JSON, and errors as one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mainstem.cli import main
from tests.mlflow_store import copy_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(store_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the project's params.yaml, and an empty MLflow store in the environment."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_store(store_template, tmp_path / "mlflow"))
    return tmp_path


def explain(settings: Path, *flags: str) -> None:
    main(["retrain", "explain", "--workspace", str(settings), "--no-airflow", *flags])


def test_explain_prints_the_chain_with_the_source_of_each_value(
    settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    explain(settings, "--current-rows", "450", "--threshold", "300")
    out = capsys.readouterr().out
    assert "dry run" in out
    assert "production: produce-grade@production is not set yet" in out
    assert "master: 450 rows now (--current-rows)" in out
    assert "threshold: 300 rows (--threshold)" in out
    assert "decision: RETRAIN - bootstrap" in out


def test_explain_json_is_the_decision(settings: Path, capsys: pytest.CaptureFixture[str]) -> None:
    explain(settings, "--current-rows", "450", "--in-flight", "--json")
    decision = json.loads(capsys.readouterr().out)
    assert decision["retrain"] is False
    assert decision["basis"] == "in_flight"
    assert decision["threshold"] == 400
    assert decision["threshold_source"] == "params.yaml retrain.threshold_rows"


def test_a_bad_threshold_is_one_line_and_exit_status_1(
    settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        explain(settings, "--current-rows", "450", "--threshold", "lots")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "--threshold must be a whole number of rows >= 0, got 'lots'" in err
    assert "Traceback" not in err
