"""The retrain loop against `mlflow server` whose tracking store is a real PostgreSQL 15 cluster."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from mlflow import MlflowClient

from mainstem.flow.batch import process_next_batch
from mainstem.flow.train import train_from_decision
from mainstem.local.samples import BatchSpec
from mainstem.local.services import PG_BIN, MlflowServer, PostgresCluster, free_port
from mainstem.params import load_params
from mainstem.training.policy import PolicyInputs
from mainstem.training.request import workspace_decision
from tests.conftest import Deliver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}); apt-get install postgresql-15")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="mainstem-pg-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root / "cluster", free_port())
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert not cluster.running()
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def mlflow_on_postgres(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    base = tmp_path_factory.mktemp("mlflow-pg")
    server = MlflowServer(
        postgres.create_database("mlflow"), base / "artifacts", free_port(), base / "server.log"
    )
    server.start()
    try:
        yield server.url
    finally:
        record = server.record
        server.stop()
        assert record is not None
        assert not record.alive()


def test_the_retrain_loop_runs_on_a_postgres_backed_server(
    workspace: Path,
    deliver: Deliver,
    postgres: PostgresCluster,
    mlflow_on_postgres: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = mlflow_on_postgres
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=60))
    process_next_batch(workspace)

    first = workspace_decision(params, PolicyInputs(threshold="40"))
    assert first.retrain
    assert first.basis == "bootstrap"
    assert first.tracking_uri == url
    trained = train_from_decision(workspace, first, requested_by="test")
    assert trained.model_version == "1"
    assert trained.master_rows == 60

    deliver(BatchSpec(2, first_id=61, rows=50))
    process_next_batch(workspace)
    second = workspace_decision(params, PolicyInputs(threshold="40"))
    assert second.retrain
    assert second.basis == "growth"
    assert (second.compatible_run_id, second.new_rows) == (trained.run_id, 50)
    retrained = train_from_decision(workspace, second, requested_by="test")
    assert retrained.model_version == "2"
    assert retrained.master_rows == 110

    third = workspace_decision(params, PolicyInputs(threshold="40"))
    assert not third.retrain
    assert third.new_rows == 0
    assert third.compatible_run_id == retrained.run_id

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    alias = client.get_registered_model(params.train.model_name).aliases
    assert str(alias[params.train.production_alias]) == retrained.production_version
    assert not params.train.tracking_db.exists()  # nothing went to the local default store
    # The runs are rows in PostgreSQL, not in a file next to the server.
    connection = psycopg2.connect(
        host="127.0.0.1", port=postgres.port, user="postgres", dbname="mlflow"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_uuid FROM runs ORDER BY start_time")
            assert [row[0] for row in cursor.fetchall()] == [trained.run_id, retrained.run_id]
    finally:
        connection.close()
