"""Stage `train` under real `dvc repro`, and the loop around it: decide, request, train, decide.

The MLflow store is each workspace's own SQLite default (`train.tracking_db`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mainstem.cli import main as cli
from mainstem.commands import dvc, git
from mainstem.durable import read_json, write_json
from mainstem.errors import CommandError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.train import train_from_decision
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from mainstem.training.model import TrainRequest
from mainstem.training.policy import PolicyInputs
from mainstem.training.registry import connect, tracking_uri
from mainstem.training.request import tracked_master_md5, workspace_decision
from tests.conftest import Deliver


@pytest.fixture(autouse=True)
def local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the workspace's default store and no Airflow, whatever the caller's environment."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "AIRFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)


def _status_clean(workspace: Path) -> bool:
    return "up to date" in dvc(["status"], workspace).stdout


def test_without_a_request_train_writes_the_same_empty_outputs(workspace: Path) -> None:
    params = load_params(workspace)
    assert read_json(params.train.request_file) == {}
    assert read_json(params.train.metrics_file) == {"trained": False}
    assert list(params.train.model_dir.iterdir()) == []
    before = (workspace / "dvc.lock").read_bytes()

    dvc(["repro", "--force", "train"], workspace)

    assert (workspace / "dvc.lock").read_bytes() == before
    assert _status_clean(workspace)
    assert not params.train.tracking_db.exists()  # no request, no MLflow


def test_train_retrain_and_stop_closes_the_loop(workspace: Path, deliver: Deliver) -> None:
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=60))
    process_next_batch(workspace)

    first = workspace_decision(params, PolicyInputs(threshold="40"))
    assert first.retrain
    assert first.basis == "bootstrap"
    assert first.current_master_rows == 60
    head = git(["rev-parse", "HEAD"], workspace).stdout.strip()
    trained = train_from_decision(workspace, first, requested_by="test")
    assert (trained.model_version, trained.production_version) == ("1", "1")
    assert trained.promoted
    assert trained.master_rows == 60

    client = connect(tracking_uri(params))
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == params.train.experiment
    assert experiment.experiment_id != "0"
    assert {
        k: run.data.params[k] for k in ("feature_version", "split_version", "model_version")
    } == {
        "feature_version": params.train.feature_version,
        "split_version": params.train.split_version,
        "model_version": params.train.model_version,
    }
    assert run.data.metrics["master_rows"] == 60
    assert run.data.metrics["rows_train"] + run.data.metrics["rows_test"] == 60
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    master_out = next(
        o for o in lock["stages"]["merge"]["outs"] if o["path"] == "data/master.parquet"
    )
    assert run.data.tags["master_md5"] == master_out["md5"]
    assert run.data.tags["git_commit"] == head
    model = client.get_registered_model(params.train.model_name)
    assert str(model.aliases[params.train.production_alias]) == "1"
    assert (params.train.model_dir / "MLmodel").is_file()
    assert _status_clean(workspace)
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert git(["log", "-1", "--format=%s"], workspace).stdout.startswith(
        f"train: {params.train.model_name} version 1 "
    )

    deliver(BatchSpec(2, first_id=61, rows=50))
    process_next_batch(workspace)
    assert _status_clean(workspace)  # new data never makes the train stage stale

    second = workspace_decision(params, PolicyInputs(threshold="40"))
    assert second.retrain
    assert second.basis == "growth"
    assert (second.compatible_run_id, second.new_rows) == (trained.run_id, 50)
    retrained = train_from_decision(workspace, second, requested_by="test")
    assert retrained.model_version == "2"
    assert retrained.master_rows == 110
    model = client.get_registered_model(params.train.model_name)
    assert str(model.aliases[params.train.production_alias]) == retrained.production_version

    third = workspace_decision(params, PolicyInputs(threshold="40"))
    assert not third.retrain
    assert third.new_rows == 0
    assert third.compatible_run_id == retrained.run_id
    assert _status_clean(workspace)


def test_a_request_for_an_older_master_is_refused(workspace: Path, deliver: Deliver) -> None:
    params = load_params(workspace)
    request = TrainRequest(
        requested_at="2026-11-27T12:00:00+00:00",
        requested_by="test",
        master_md5=tracked_master_md5(params),
        master_rows=0,
        reason="a request made before the batch below",
        decision={},
    )
    write_json(params.train.request_file, request.to_json())
    deliver(BatchSpec(1, first_id=1, rows=20))
    process_next_batch(workspace)

    with pytest.raises(CommandError, match="master changed since training was requested"):
        dvc(["repro", "train"], workspace)
    assert not params.train.tracking_db.exists()  # refused before anything was logged


def test_explain_counts_the_master_through_dvc(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(["retrain", "explain", "--workspace", str(workspace)])
    out = capsys.readouterr().out
    assert "master: 0 rows now (DVC metrics)" in out
    assert "threshold: 400 rows (params.yaml retrain.threshold_rows)" in out
    assert "decision: no retrain - bootstrap" in out
    assert "the master is empty" in out

    cli(["retrain", "explain", "--workspace", str(workspace), "--json", "--current-rows", "450"])
    decision = json.loads(capsys.readouterr().out)
    assert decision["retrain"]
    assert decision["current_master_rows"] == 450
    assert decision["rows_source"] == "--current-rows"


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_forcing_train_again_on_a_served_request_trains_and_registers_nothing(
    workspace: Path, deliver: Deliver
) -> None:
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=60))
    process_next_batch(workspace)
    trained = train_from_decision(
        workspace, workspace_decision(params, PolicyInputs(threshold="40")), requested_by="test"
    )
    metrics = params.train.metrics_file.read_bytes()
    lock = (workspace / "dvc.lock").read_bytes()
    model = _tree_bytes(params.train.model_dir)

    dvc(["repro", "--force", "train"], workspace)

    assert params.train.metrics_file.read_bytes() == metrics
    assert _tree_bytes(params.train.model_dir) == model
    assert (workspace / "dvc.lock").read_bytes() == lock
    assert _status_clean(workspace)
    assert git(["status", "--porcelain"], workspace).stdout == ""
    client = connect(tracking_uri(params))
    runs = client.search_runs([client.get_run(trained.run_id).info.experiment_id])
    assert [run.info.run_id for run in runs] == [trained.run_id]
    versions = client.search_model_versions(f"name = '{params.train.model_name}'")
    assert [version.version for version in versions] == [1]
