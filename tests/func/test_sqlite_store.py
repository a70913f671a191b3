"""The SQLite reader finds exactly what the policy's look-up finds through MLflow's client.

Each case builds a real MLflow SQLite store with MLflow's client, then reads it both ways: the
same StoreFacts, or the same error with the same text. The reader must also leave the file as it
found it, and hand a store of another schema back to MLflow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mainstem.errors import MainstemError, PolicyError, RegistryError
from mainstem.training.policy import Scope, StoreFacts, look_up
from mainstem.training.registry import connect
from mainstem.training.sqlite_store import read_facts, sqlite_path
from tests.mlflow_store import copy_store, log_run, register

EXPERIMENT = "mainstem-produce"
MODEL = "produce-grade"
ALIAS = "production"
SCOPE = Scope(EXPERIMENT, MODEL, ALIAS)
TIMEOUT_BOUND_MS = 5_000  # runs that started at or before this are past the training timeout

Build = Callable[[MlflowClient], object]


def experiment(client: MlflowClient, name: str = EXPERIMENT) -> str:
    return client.create_experiment(name, artifact_location="file:///nowhere/artifacts")


def production(client: MlflowClient, experiment_id: str, **run: object) -> str:
    """A run registered as a new version of MODEL, with the production alias on it."""
    run_id = log_run(client, experiment_id, **{"start": 1_000, **run})  # type: ignore[arg-type]
    register(client, MODEL, run_id, ALIAS)
    return run_id


def nothing(client: MlflowClient) -> None:
    """An empty store: no experiment, no model."""


def experiment_only(client: MlflowClient) -> None:
    log_run(client, experiment(client), start=1_000)


def model_without_alias(client: MlflowClient) -> None:
    register(client, MODEL, log_run(client, experiment(client), start=1_000))


def alias_on_another_model(client: MlflowClient) -> None:
    register(client, "another-model", log_run(client, experiment(client), start=1_000), ALIAS)


def compatible_production(client: MlflowClient) -> None:
    production(client, experiment(client), master_rows=120)


def newer_runs_of_every_kind(client: MlflowClient) -> None:
    """The newest FINISHED run with the versions wins over older ones, other versions, failures."""
    exp = experiment(client)
    production(client, exp, master_rows=100)
    log_run(client, exp, start=2_000, master_rows=140)
    log_run(client, exp, start=3_000, master_rows=10, versions={"feature_version": "f2"})
    log_run(client, exp, start=3_500, master_rows=10, versions={"model_version": "m0"})
    log_run(client, exp, start=4_000, status="FAILED", master_rows=20)
    log_run(client, exp, start=4_500, status="KILLED", master_rows=30)
    log_run(client, experiment(client, "another-experiment"), start=9_000, master_rows=50)


def newer_run_with_other_versions_only(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    log_run(client, exp, start=2_000, master_rows=10, versions={"split_version": "s9"})


def deleted_newer_run(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    client.delete_run(log_run(client, exp, start=2_000, master_rows=140))


def same_start_time(client: MlflowClient) -> None:
    """Runs that started at the same millisecond: MLflow breaks the tie by run id."""
    exp = experiment(client)
    production(client, exp, master_rows=100)
    for rows in (110, 120, 130):
        log_run(client, exp, start=2_000, master_rows=rows)
        log_run(client, exp, start=3_000, status="RUNNING", master_rows=None)


def production_not_finished(client: MlflowClient) -> None:
    production(client, experiment(client), status="KILLED")


def running_inside_timeout(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    log_run(client, exp, start=6_000, status="RUNNING", master_rows=None)
    log_run(client, exp, start=7_000, status="RUNNING", master_rows=None)


def running_outside_timeout(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    log_run(client, exp, start=2_000, status="RUNNING", master_rows=None)
    log_run(client, exp, start=TIMEOUT_BOUND_MS, status="RUNNING", master_rows=None)


def running_without_production(client: MlflowClient) -> None:
    log_run(client, experiment(client), start=6_000, status="RUNNING", master_rows=None)


def production_in_another_experiment(client: MlflowClient) -> None:
    """The model exists, the scope's experiment does not: no compatible run can be searched."""
    production(client, experiment(client, "elsewhere"), master_rows=100)


def compatible_without_master_rows(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    log_run(client, exp, start=2_000, master_rows=None)


def master_rows_logged_twice(client: MlflowClient) -> None:
    """The latest value of a metric logged at two steps, as MLflow's run data holds it."""
    exp = experiment(client)
    run_id = production(client, exp, master_rows=100)
    client.log_metric(run_id, "master_rows", 180, step=1)
    client.log_metric(run_id, "f1_macro", 0.95, step=1)


def master_rows_not_a_count(client: MlflowClient) -> None:
    production(client, experiment(client), master_rows=12.5)


def production_without_a_version_param(client: MlflowClient) -> None:
    exp = experiment(client)
    run_id = client.create_run(exp, start_time=1_000).info.run_id
    client.log_param(run_id, "feature_version", "f1")
    client.set_terminated(run_id, "FINISHED", end_time=1_001)
    register(client, MODEL, run_id, ALIAS)


def alias_moved_to_a_newer_version(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    newer = log_run(client, exp, start=2_000, master_rows=150, versions={"model_version": "m2"})
    register(client, MODEL, newer, ALIAS)


def deleted_experiment(client: MlflowClient) -> None:
    exp = experiment(client)
    production(client, exp, master_rows=100)
    client.delete_experiment(exp)


CASES: dict[str, Build] = {
    "no experiment": nothing,
    "an experiment but no model": experiment_only,
    "a model without the alias": model_without_alias,
    "the alias on another model": alias_on_another_model,
    "production with a compatible FINISHED run": compatible_production,
    "newer runs of every kind": newer_runs_of_every_kind,
    "a newer FINISHED run with other versions": newer_run_with_other_versions_only,
    "a deleted newer run": deleted_newer_run,
    "runs started at the same millisecond": same_start_time,
    "production's run not FINISHED": production_not_finished,
    "a RUNNING run inside the timeout": running_inside_timeout,
    "a RUNNING run outside the timeout": running_outside_timeout,
    "a RUNNING run and no production": running_without_production,
    "production in another experiment": production_in_another_experiment,
    "a compatible run without master_rows": compatible_without_master_rows,
    "master_rows logged twice": master_rows_logged_twice,
    "master_rows not a count": master_rows_not_a_count,
    "production's run without a version param": production_without_a_version_param,
    "the alias moved to a newer version": alias_moved_to_a_newer_version,
    "a deleted experiment": deleted_experiment,
}


def outcome(read: Callable[[], StoreFacts | None]) -> object:
    """The facts read, or the type and text of the error raised instead."""
    try:
        return read()
    except (PolicyError, RegistryError) as error:
        return (type(error), str(error))


@pytest.mark.parametrize("bound_ms", [None, TIMEOUT_BOUND_MS], ids=["any run", "timeout"])
@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_the_sqlite_reader_finds_what_mlflow_finds(
    client: MlflowClient, build: Build, bound_ms: int | None
) -> None:
    build(client)
    uri = client.tracking_uri
    database = sqlite_path(uri)
    assert database is not None

    through_sql = outcome(lambda: read_facts(database, uri, SCOPE, bound_ms))

    assert through_sql == outcome(lambda: look_up(client, SCOPE, bound_ms))


def kind(found: object) -> str:
    if isinstance(found, tuple):
        return found[0].__name__
    assert isinstance(found, StoreFacts)
    if found.running_run_id is not None:
        return "running"
    if found.production is None:
        return "no production"
    return "no compatible run" if found.compatible is None else "compatible"


def test_the_cases_reach_every_outcome(store_template: Path, tmp_path: Path) -> None:
    """The table above is not vacuous: each outcome of the look-up occurs in it."""
    kinds = set()
    for number, build in enumerate(CASES.values()):
        client = connect(copy_store(store_template, tmp_path / str(number)))
        build(client)
        kinds.add(kind(outcome(lambda c=client: look_up(c, SCOPE))))
    assert kinds == {
        "PolicyError",
        "RegistryError",
        "running",
        "no production",
        "no compatible run",
        "compatible",
    }


def test_reading_leaves_the_file_as_it_was(client: MlflowClient) -> None:
    newer_runs_of_every_kind(client)
    database = sqlite_path(client.tracking_uri)
    assert database is not None
    folder = database.parent
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    read_facts(database, client.tracking_uri, SCOPE, None)

    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_a_store_of_another_schema_is_left_to_mlflow(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('0584bdc529eb')")
    db.close()

    assert read_facts(database, f"sqlite:///{database}", SCOPE) is None


def test_a_file_that_is_not_a_store_is_an_error_naming_it(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"not a database, but long enough to be read as one" * 100)
    uri = f"sqlite:///{database}"

    with pytest.raises(MainstemError, match=f"MLflow store {uri}: file is not a database"):
        read_facts(database, uri, SCOPE)
