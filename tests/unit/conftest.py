"""Fixtures of the unit tests that talk to a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from mainstem.training.registry import connect
from tests.mlflow_store import copy_store, empty_store


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_store(tmp_path_factory.mktemp("mlflow-template") / "mlflow.db")


@pytest.fixture
def client(store_template: Path, tmp_path: Path) -> MlflowClient:
    """A private copy of an empty store, so each test starts from nothing in a few ms."""
    return connect(copy_store(store_template, tmp_path / "mlflow"))
