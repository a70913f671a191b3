"""The retrain policy: the verdict as a table of pure cases, the counts it is given, and the
look-up of its inputs against a real MLflow SQLite store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from _pytest.mark import ParameterSet
from mlflow import MlflowClient

from mainstem.errors import PolicyError, RegistryError
from mainstem.training.policy import (
    CompatibleRun,
    Counts,
    RetrainDecision,
    Scope,
    StoreFacts,
    Verdict,
    decide_retrain,
    explain,
    look_up,
    make_decision,
    parse_counts,
    verdict,
)
from mainstem.training.registry import Production, connect
from tests.mlflow_store import log_run, register

EXPERIMENT = "mainstem-produce"
MODEL = "produce-grade"
ALIAS = "production"
SCOPE = Scope(EXPERIMENT, MODEL, ALIAS)
PRODUCTION = Production(MODEL, ALIAS, "3", "run-p", "f1", "s1", "m1", {"f1_macro": 0.9})
FILTER = (
    "params.feature_version = 'f1' AND params.split_version = 's1' AND "
    "params.model_version = 'm1' AND attributes.status = 'FINISHED'"
)


def facts(
    production: Production | None = None,
    trained_rows: int | None = None,
    running: str | None = None,
) -> StoreFacts:
    """What a store could hold: production, a compatible run that saw `trained_rows`, a run."""
    compatible = None if trained_rows is None else CompatibleRun("run-c", trained_rows)
    return StoreFacts(
        "sqlite:///m.db",
        SCOPE,
        production,
        FILTER if production else None,
        compatible,
        running,
    )


BOOTSTRAP = f"bootstrap: no {MODEL}@{ALIAS} yet, and the master"
NO_COMPATIBLE = (
    f"no FINISHED run in experiment '{EXPERIMENT}' has the production versions (f1, s1, m1), "
    "so the rows it saw are unknown; retraining"
)
RUNNING = (
    f"training run run-r is still RUNNING in experiment '{EXPERIMENT}'; not starting a second "
    "(if that training died, mark the run FAILED)"
)
CALLER = "the caller reports a training already in flight; not starting a second"


def case(
    name: str, current: int, threshold: int, store: StoreFacts, expected: Verdict
) -> ParameterSet:
    """One row of the table: the counts and what the store holds, the verdict expected."""
    return pytest.param(current, threshold, store, False, expected, id=name)


def in_flight(name: str, store: StoreFacts, caller: bool, expected: Verdict) -> ParameterSet:
    """A row with a training in flight: the caller knows of one, or the store holds one."""
    return pytest.param(10_000, 50, store, caller, expected, id=name)


SHRUNK = (
    "the master shrank by 10 rows since run run-c (100 -> 90), e.g. under a stricter contract; "
    "not retraining"
)
GROWN = facts(PRODUCTION, 100)
VERDICTS = [
    case(
        "bootstrap-empty", 0, 0, facts(), Verdict(False, "bootstrap", f"{BOOTSTRAP} is empty", None)
    ),
    case(
        "bootstrap-below",
        399,
        400,
        facts(),
        Verdict(False, "bootstrap", f"{BOOTSTRAP} has 399 rows < threshold 400", None),
    ),
    case(
        "bootstrap-at",
        400,
        400,
        facts(),
        Verdict(True, "bootstrap", f"{BOOTSTRAP} has 400 rows >= threshold 400", None),
    ),
    case(
        "bootstrap-above",
        401,
        400,
        facts(),
        Verdict(True, "bootstrap", f"{BOOTSTRAP} has 401 rows >= threshold 400", None),
    ),
    case("growth-none", 100, 50, GROWN, Verdict(False, "growth", "0 new rows < threshold 50", 0)),
    case(
        "growth-below", 149, 50, GROWN, Verdict(False, "growth", "49 new rows < threshold 50", 49)
    ),
    case("growth-at", 150, 50, GROWN, Verdict(True, "growth", "50 new rows >= threshold 50", 50)),
    case(
        "growth-above", 151, 50, GROWN, Verdict(True, "growth", "51 new rows >= threshold 50", 51)
    ),
    case("shrunk", 90, 0, GROWN, Verdict(False, "shrunk", SHRUNK, -10)),
    case(
        "no-compatible-run",
        101,
        400,
        facts(PRODUCTION),
        Verdict(True, "no_compatible_run", NO_COMPATIBLE, None),
    ),
    in_flight("in-flight-by-caller", GROWN, True, Verdict(False, "in_flight", CALLER, 9_900)),
    in_flight(
        "in-flight-by-running-run",
        facts(PRODUCTION, 100, "run-r"),
        False,
        Verdict(False, "in_flight", RUNNING, 9_900),
    ),
    in_flight(
        "in-flight-running-run-named-first",
        facts(running="run-r"),
        True,
        Verdict(False, "in_flight", RUNNING, None),
    ),
    in_flight(
        "in-flight-blocks-a-bootstrap", facts(), True, Verdict(False, "in_flight", CALLER, None)
    ),
]


@pytest.mark.parametrize(("current", "threshold", "store", "caller", "expected"), VERDICTS)
def test_verdict(
    current: int, threshold: int, store: StoreFacts, caller: bool, expected: Verdict
) -> None:
    assert verdict(current, threshold, store, caller) == expected


def test_counts_name_where_they_came_from() -> None:
    counts = parse_counts(" 530 ", " 25 ", 400)
    assert counts == Counts(530, "CURRENT_MASTER_ROWS", 25, "RETRAIN_THRESHOLD_ROWS")
    counts = parse_counts(7, None, 400, rows_source="DVC metrics")
    assert counts == Counts(7, "DVC metrics", 400, "params.yaml retrain.threshold_rows")


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "", " ", "4e2", True, -3, 2.0])
def test_unusable_threshold_is_an_error_naming_the_variable(raw: object) -> None:
    with pytest.raises(PolicyError, match="RETRAIN_THRESHOLD_ROWS must be a whole number"):
        parse_counts(500, raw, 400)


@pytest.mark.parametrize("rows", ["-5", "many", -1, None])
def test_unusable_master_rows_is_an_error(rows: object) -> None:
    with pytest.raises(PolicyError, match="CURRENT_MASTER_ROWS must be a whole number"):
        parse_counts(rows, None, 400)


def test_decision_survives_json_and_explains_its_chain() -> None:
    counts = parse_counts(530, "400", 400)
    decision = make_decision(counts, facts(PRODUCTION, 100), training_in_flight=False)
    assert RetrainDecision.from_json(json.loads(json.dumps(decision.to_json()))) == decision
    assert (decision.production_version, decision.compatible_run_id) == ("3", "run-c")
    assert decision.trained_master_rows == 100
    text = "\n".join(explain(decision))
    assert f"{MODEL}@{ALIAS} -> version 3, run run-p (f1, s1, m1)" in text
    assert f"search: {FILTER}, newest first" in text
    assert "530 rows now (CURRENT_MASTER_ROWS) -> 430 new" in text
    assert "decision: RETRAIN - 430 new rows >= threshold 400" in text


def test_a_decision_lacking_a_field_is_refused() -> None:
    decision = make_decision(parse_counts(1, None, 400), facts(), training_in_flight=False)
    value = decision.to_json()
    del value["threshold"]
    with pytest.raises(PolicyError, match="lacks threshold"):
        RetrainDecision.from_json(value)


# The look-up, against a real store.


@pytest.fixture
def experiment(client: MlflowClient, tmp_path: Path) -> str:
    return client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())


def production(
    client: MlflowClient, experiment: str, rows: int = 100, status: str = "FINISHED"
) -> str:
    run_id = log_run(client, experiment, start=1_000, status=status, master_rows=rows)
    register(client, MODEL, run_id, ALIAS)
    return run_id


def test_an_empty_store_holds_nothing(client: MlflowClient) -> None:
    found = look_up(client, SCOPE)
    assert found == StoreFacts(client.tracking_uri, SCOPE, None, None, None, None)


def test_registered_model_without_the_alias_is_no_production(
    client: MlflowClient, experiment: str
) -> None:
    register(client, MODEL, log_run(client, experiment, start=1_000))
    found = look_up(client, SCOPE)
    assert found.production is None
    assert found.compatible is None


def test_production_is_followed_to_its_versions_and_last_compatible_run(
    client: MlflowClient, experiment: str
) -> None:
    run_id = production(client, experiment, rows=100)
    found = look_up(client, SCOPE)
    assert found.production is not None
    assert (found.production.version, found.production.run_id) == ("1", run_id)
    assert found.compatible == CompatibleRun(run_id, 100)
    assert found.filter_string == FILTER


def test_the_newest_finished_run_with_the_production_versions_is_the_compatible_one(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    newer = log_run(client, experiment, start=2_000, master_rows=140)
    log_run(client, experiment, start=3_000, master_rows=10, versions={"feature_version": "f2"})
    log_run(client, experiment, start=4_000, status="FAILED", master_rows=20)
    assert look_up(client, SCOPE).compatible == CompatibleRun(newer, 140)


def test_compatible_run_without_master_rows_is_an_error_naming_it(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    bare = log_run(client, experiment, start=2_000, master_rows=None)
    with pytest.raises(PolicyError, match=f"run {bare} .*no metric master_rows"):
        look_up(client, SCOPE)


def test_no_finished_run_with_the_production_versions_is_no_compatible_run(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100, status="KILLED")
    found = look_up(client, SCOPE)
    assert found.production is not None
    assert found.compatible is None


def test_a_running_run_is_found(client: MlflowClient, experiment: str) -> None:
    production(client, experiment, rows=100)
    running = log_run(client, experiment, start=2_000, status="RUNNING", master_rows=None)
    found = look_up(client, SCOPE)
    assert found.running_run_id == running
    assert found.compatible is not None  # the chain is still read, for the explanation


def test_a_running_run_older_than_the_training_timeout_is_taken_for_dead(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    log_run(client, experiment, start=2_000, status="RUNNING", master_rows=None)
    assert look_up(client, SCOPE, running_started_after_ms=5_000).running_run_id is None


def test_unreachable_store_raises_instead_of_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(RegistryError, match=f"MLflow store {uri}"):
        look_up(connect(uri), SCOPE)


def test_a_running_training_blocks_a_second_in_the_store(
    client: MlflowClient, experiment: str
) -> None:
    production(client, experiment, rows=100)
    running = log_run(client, experiment, start=2_000, status="RUNNING", master_rows=None)
    decision = decide_retrain(client, SCOPE, parse_counts(10_000, None, 400))
    assert not decision.retrain
    assert decision.basis == "in_flight"
    assert decision.in_flight_run_id == running
    assert decision.new_rows == 9_900


def test_the_store_decides_growth_from_the_last_compatible_run(
    client: MlflowClient, experiment: str
) -> None:
    run_id = production(client, experiment, rows=100)
    decision = decide_retrain(client, SCOPE, parse_counts(150, "50", 400))
    assert decision.retrain
    assert decision.basis == "growth"
    assert (decision.production_run_id, decision.compatible_run_id) == (run_id, run_id)
    assert decision.tracking_uri == client.tracking_uri
