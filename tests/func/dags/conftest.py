"""Airflow for in-process DAG tests: a migrated metadata DB and the DAGs parsed per workspace."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(autouse=True)
def default_sigterm() -> Iterator[None]:
    """Restore SIGTERM's handler after each DAG test.

    `dag.test()` runs tasks in this process, and Airflow's task runner leaves its own SIGTERM
    handler installed; processes forked later by other tests would inherit it and ignore SIGTERM.
    """
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def dagbag(airflow_db: None, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The DAGs of `dags/`, parsed with MAINSTEM_WORKSPACE pointing at this test's workspace."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MAINSTEM_WORKSPACE", str(workspace))
    return DagBag(dag_folder=str(ROOT / "dags"))


def take_queued(dag_id: str) -> list[dict[str, Any]]:
    """The conf of every queued run of `dag_id`, removing those runs.

    Under `dag.test()` a TriggerDagRunOperator only queues the run; the test runs the target DAG
    itself with that conf, and removes the queued run so it is not counted as in flight later.
    """
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        queued = [run for run in runs if str(run.state) == "queued"]
        confs = [dict(run.conf or {}) for run in queued]
        for run in queued:
            session.delete(run)
    return confs


def variable(name: str) -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(name, default_var=None)


def set_variable(name: str, value: str | None) -> None:
    from airflow.models.variable import Variable

    if value is None:
        Variable.delete(name)
    else:
        Variable.set(name, value)
