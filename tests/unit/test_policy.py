"""The retrain policy against a real MLflow SQLite store: the verdict and every edge case."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from mainstem.errors import PolicyError, RegistryError
from mainstem.training.policy import RetrainDecision, decide_retrain, explain
from mainstem.training.registry import connect
from tests.mlflow_store import log_run, register

EXPERIMENT = "mainstem-produce"
MODEL = "produce-grade"
ALIAS = "production"


@pytest.fixture
def experiment(client: MlflowClient, tmp_path: Path) -> str:
    return client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())


def decide(
    client: MlflowClient, rows: object, threshold: object = None, **kw: Any
) -> RetrainDecision:
    return decide_retrain(
        client,
        experiment=EXPERIMENT,
        model_name=MODEL,
        alias=ALIAS,
        current_master_rows=rows,
        threshold_raw=threshold,
        threshold_default=400,
        **kw,
    )


def production(client: MlflowClient, experiment: str, rows: int = 100, **kw: Any) -> str:
    run_id = log_run(client, experiment, start=1_000, master_rows=rows, **kw)
    register(client, MODEL, run_id, ALIAS)
    return run_id


def test_bootstrap_trains_once_the_master_reaches_the_threshold(client: MlflowClient) -> None:
    decision = decide(client, 400)
    assert decision.retrain and decision.basis == "bootstrap"
    assert decision.production_version is None and decision.new_rows is None
    assert "bootstrap" in decision.reason and "400 rows >= threshold 400" in decision.reason
    assert decision.threshold_source == "params.yaml retrain.threshold_rows"


def test_bootstrap_waits_below_the_threshold(client: MlflowClient) -> None:
    decision = decide(client, 399)
    assert not decision.retrain and decision.basis == "bootstrap"
    assert "399 rows < threshold 400" in decision.reason


def test_bootstrap_never_trains_on_an_empty_master(client: MlflowClient) -> None:
    decision = decide(client, 0, "0")
    assert not decision.retrain and "empty" in decision.reason


def test_registered_model_without_the_alias_is_a_bootstrap(
    client: MlflowClient, experiment: str
) -> None:
    register(client, MODEL, log_run(client, experiment, start=1_000, master_rows=100))
    decision = decide(client, 500)
    assert decision.retrain and decision.basis == "bootstrap"
    assert decision.production_version is None


@pytest.mark.parametrize(("rows", "retrain"), [(150, True), (149, False)])
def test_retrains_when_new_rows_reach_the_threshold(
    client: MlflowClient, experiment: str, rows: int, retrain: bool
) -> None:
    run_id = production(client, experiment, rows=100)
    decision = decide(client, rows, "50")
    assert decision.retrain is retrain and decision.basis == "growth"
    assert decision.production_version == "1" and decision.production_run_id == run_id
    assert decision.compatible_run_id == run_id
    assert decision.trained_master_rows == 100 and decision.new_rows == rows - 100
    assert decision.threshold == 50 and decision.threshold_source == "RETRAIN_THRESHOLD_ROWS"


def test_counts_from_the_newest_finished_run_with_the_production_versions(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    newer = log_run(client, experiment, start=2_000, master_rows=140)
    log_run(client, experiment, start=3_000, master_rows=10, feature_version="f2")
    log_run(client, experiment, start=4_000, master_rows=20, status="FAILED")
    decision = decide(client, 200, "50")
    assert decision.compatible_run_id == newer and decision.trained_master_rows == 140
    assert decision.new_rows == 60 and decision.retrain
    assert decision.filter_string == (
        "params.feature_version = 'f1' AND params.split_version = 's1' AND "
        "params.model_version = 'm1' AND attributes.status = 'FINISHED'"
    )


def test_compatible_run_without_master_rows_is_an_error_naming_it(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    bare = log_run(client, experiment, start=2_000, master_rows=None)
    with pytest.raises(PolicyError, match=f"run {bare} .*no metric master_rows"):
        decide(client, 500)


def test_no_compatible_finished_run_retrains_and_says_why(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100, status="KILLED")
    decision = decide(client, 101, "400")
    assert decision.retrain and decision.basis == "no_compatible_run"
    assert decision.compatible_run_id is None and decision.new_rows is None
    assert "no FINISHED run" in decision.reason and "(f1, s1, m1)" in decision.reason


def test_a_shrunken_master_does_not_retrain(client: MlflowClient, experiment: str) -> None:
    production(client, experiment, rows=100)
    decision = decide(client, 90, "0")
    assert not decision.retrain and decision.basis == "shrunk"
    assert decision.new_rows == -10
    assert "shrank by 10 rows" in decision.reason


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "", " ", "4e2", True, -3, 2.0])
def test_unusable_threshold_is_an_error_naming_the_variable(
    client: MlflowClient, raw: object
) -> None:
    with pytest.raises(PolicyError, match="RETRAIN_THRESHOLD_ROWS must be a whole number"):
        decide(client, 500, raw)


def test_threshold_variable_text_is_trimmed(client: MlflowClient) -> None:
    decision = decide(client, 30, " 25 ")
    assert decision.threshold == 25 and decision.retrain


@pytest.mark.parametrize("rows", ["-5", "many", -1, None])
def test_unusable_master_rows_is_an_error(client: MlflowClient, rows: object) -> None:
    with pytest.raises(PolicyError, match="CURRENT_MASTER_ROWS must be a whole number"):
        decide(client, rows)


def test_a_running_training_blocks_a_second(client: MlflowClient, experiment: str) -> None:
    production(client, experiment, rows=100)
    running = log_run(client, experiment, start=2_000, master_rows=None, status="RUNNING")
    decision = decide(client, 10_000)
    assert not decision.retrain and decision.basis == "in_flight"
    assert decision.in_flight_run_id == running and running in decision.reason
    assert decision.new_rows == 9_900  # the chain is still computed, for the explanation


def test_the_caller_can_report_a_training_in_flight(client: MlflowClient) -> None:
    decision = decide(client, 10_000, training_in_flight=True)
    assert not decision.retrain and decision.basis == "in_flight"
    assert decision.in_flight_run_id is None and "caller" in decision.reason


def test_unreachable_store_raises_instead_of_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(RegistryError, match=f"MLflow store {uri}"):
        decide(connect(uri), 500)


def test_decision_survives_json_and_explains_its_chain(
    client: MlflowClient, experiment: str
) -> None:
    run_id = production(client, experiment, rows=100)
    decision = decide(client, 530, "400")
    assert RetrainDecision.from_json(json.loads(json.dumps(decision.to_json()))) == decision
    text = "\n".join(explain(decision))
    assert f"{MODEL}@{ALIAS} -> version 1, run {run_id} (f1, s1, m1)" in text
    assert decision.filter_string is not None and decision.filter_string in text
    assert "530 rows now (CURRENT_MASTER_ROWS) -> 430 new" in text
    assert "decision: RETRAIN - 430 new rows >= threshold 400" in text


def test_a_running_run_older_than_the_training_timeout_does_not_block(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    log_run(client, experiment, start=2_000, master_rows=None, status="RUNNING")
    decision = decide(client, 10_000, running_started_after_ms=5_000)
    assert decision.retrain and decision.basis == "growth"
    assert decision.in_flight_run_id is None
