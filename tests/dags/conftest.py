"""Airflow for in-process DAG tests: a migrated metadata DB and the DAGs parsed per workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def dagbag(airflow_db: None, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The DAGs of `dags/`, parsed with MAINSTEM_WORKSPACE pointing at this test's workspace."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MAINSTEM_WORKSPACE", str(workspace))
    yield DagBag(dag_folder=str(ROOT / "dags"))
