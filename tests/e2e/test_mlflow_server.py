"""The loop against a real `mlflow server` on 127.0.0.1: decide, train through DVC, decide again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mainstem.flow.batch import process_next_batch
from mainstem.flow.train import train_from_decision
from mainstem.local.samples import BatchSpec
from mainstem.local.services import MlflowServer, free_port
from mainstem.params import load_params
from mainstem.training.policy import PolicyInputs
from mainstem.training.request import workspace_decision
from tests.conftest import Deliver

pytestmark = pytest.mark.e2e


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A lean `mlflow server` (one worker, no job runner) over SQLite; its URL."""
    server = MlflowServer(
        backend_store_uri=f"sqlite:///{tmp_path / 'server.db'}",
        artifacts=tmp_path / "server-artifacts",
        port=free_port(),
        log_file=tmp_path / "mlflow-server.log",
    )
    server.start(timeout=90)
    try:
        yield server.url
    finally:
        server.stop()


def test_train_and_decide_through_a_real_mlflow_server(
    workspace: Path, deliver: Deliver, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=60))
    process_next_batch(workspace)

    first = workspace_decision(params, PolicyInputs(threshold="40"))
    assert first.retrain
    assert first.basis == "bootstrap"
    assert first.tracking_uri == mlflow_server
    trained = train_from_decision(workspace, first, requested_by="test")

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    model = client.get_registered_model(params.train.model_name)
    assert str(model.aliases[params.train.production_alias]) == trained.model_version == "1"
    assert client.get_run(trained.run_id).data.metrics["master_rows"] == 60
    assert (params.train.model_dir / "MLmodel").is_file()  # downloaded back from the server
    assert not params.train.tracking_db.exists()  # nothing went to the local default store

    again = workspace_decision(params, PolicyInputs(threshold="40"))
    assert not again.retrain
    assert again.new_rows == 0
    assert again.compatible_run_id == trained.run_id
