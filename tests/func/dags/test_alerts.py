"""Alerts under `dag.test()`, received by a real HTTP server on 127.0.0.1.

The Airflow connection `mainstem_alerts` (here from `AIRFLOW_CONN_MAINSTEM_ALERTS`) points at the
server; without it nothing is sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from mainstem.training.registry import connect, resolve_production, tracking_uri
from tests.conftest import Deliver
from tests.func.dags.conftest import set_variable, take_queued


class Inbox:
    """What the server received: each POST's path and JSON body, in order."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []

    def alerts(self) -> list[dict[str, Any]]:
        return [body for _path, body in self.received]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    """An HTTP server on 127.0.0.1 that records every POST; the inbox and its URL."""
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            inbox.received.append((self.path, json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox, f"http://127.0.0.1:{server.server_port}/alerts"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alerts_on(inbox: tuple[Inbox, str], monkeypatch: pytest.MonkeyPatch) -> Inbox:
    received, url = inbox
    connection = json.dumps({"conn_type": "http", "host": url})
    monkeypatch.setenv("AIRFLOW_CONN_MAINSTEM_ALERTS", connection)
    return received


def test_no_alert_is_sent_without_the_connection(
    dagbag: Any, inbox: tuple[Inbox, str], deliver: Deliver
) -> None:
    received, _url = inbox
    deliver(BatchSpec(1, first_id=1, rows=20, drop_column="grade"))

    assert str(dagbag.dags["data_pipeline_dag"].test().state) == "failed"
    assert received.received == []


def test_a_rejected_batch_sends_one_alert(
    dagbag: Any, alerts_on: Inbox, workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=20, drop_column="grade"))

    run = dagbag.dags["data_pipeline_dag"].test()

    assert str(run.state) == "failed"
    (batch,) = [p.name for p in load_params(workspace).ingest.quarantine_dir.iterdir()]
    (alert,) = alerts_on.alerts()
    assert alert["kind"] == "batch_rejected"
    assert alert["dag_id"] == "data_pipeline_dag"
    assert alert["run_id"] == run.run_id
    assert alert["batch"] == batch
    assert "grade" in alert["reason"]
    assert alert["next_command"].startswith(f"mainstem report --workspace {workspace} {batch}")
    assert alerts_on.received[0][0] == "/alerts"


def test_a_failed_run_sends_one_alert(dagbag: Any, alerts_on: Inbox, workspace: Path) -> None:
    run = dagbag.dags["train_pipeline_dag"].test(run_conf={})

    assert str(run.state) == "failed"
    (alert,) = alerts_on.alerts()
    assert alert["kind"] == "run_failed"
    assert alert["run_id"] == run.run_id
    assert alert["reason"].startswith("task train failed: train_pipeline_dag needs the retrain")
    assert alert["next_command"].startswith(f"mainstem status --workspace {workspace}")


def test_a_training_that_does_not_take_production_sends_one_alert(
    dagbag: Any, alerts_on: Inbox, workspace: Path, deliver: Deliver
) -> None:
    params = load_params(workspace)
    take_queued("retrain_policy_dag")
    set_variable("RETRAIN_THRESHOLD_ROWS", "20")
    try:
        deliver(BatchSpec(1, first_id=1, rows=40))
        assert str(dagbag.dags["data_pipeline_dag"].test().state) == "success"
        (policy_conf,) = take_queued("retrain_policy_dag")
        assert str(dagbag.dags["retrain_policy_dag"].test(run_conf=policy_conf).state) == "success"
    finally:
        set_variable("RETRAIN_THRESHOLD_ROWS", None)
    (train_conf,) = take_queued("train_pipeline_dag")
    train = dagbag.dags["train_pipeline_dag"]
    assert str(train.test(run_conf=train_conf).state) == "success"
    assert alerts_on.alerts() == []  # the first version takes production
    client = connect(tracking_uri(params))
    production = resolve_production(client, params.train.model_name, "production")
    assert production is not None
    client.log_metric(production.run_id, params.train.eval_metric, 2.0)  # beyond any real score

    again = train.test(run_conf=train_conf)

    assert str(again.state) == "success"
    (alert,) = alerts_on.alerts()
    assert alert["kind"] == "not_promoted"
    assert alert["run_id"] == again.run_id
    assert alert["batch"] is not None
    assert "production, which stays at version 1" in alert["reason"]
    assert alert["next_command"].startswith(f"mainstem retrain explain --workspace {workspace}")
