"""The loop against a real `mlflow server` on 127.0.0.1: decide, train through DVC, decide again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mainstem.batchflow import process_next_batch
from mainstem.params import load_params
from mainstem.retrain import train_from_decision, workspace_decision
from mainstem.samples import BatchSpec
from tests.conftest import Deliver

pytestmark = pytest.mark.e2e
_READY_SECONDS = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A lean `mlflow server` (one worker, no job runner) over SQLite; its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + _READY_SECONDS
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not become healthy:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        # The server runs its worker in child processes: stop the whole group it leads.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_train_and_decide_through_a_real_mlflow_server(
    workspace: Path, deliver: Deliver, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=60))
    process_next_batch(workspace)

    first = workspace_decision(params, threshold_raw="40")
    assert first.retrain and first.basis == "bootstrap"
    assert first.tracking_uri == mlflow_server
    trained = train_from_decision(workspace, first, requested_by="test")

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    model = client.get_registered_model(params.train.model_name)
    assert str(model.aliases[params.train.production_alias]) == trained.model_version == "1"
    assert client.get_run(trained.run_id).data.metrics["master_rows"] == 60
    assert (params.train.model_dir / "MLmodel").is_file()  # downloaded back from the server
    assert not params.train.tracking_db.exists()  # nothing went to the local default store

    again = workspace_decision(params, threshold_raw="40")
    assert not again.retrain and again.new_rows == 0
    assert again.compatible_run_id == trained.run_id
