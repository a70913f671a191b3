"""Recording a training in a real MLflow store, and finding it again by the request it served.

Logging a model runs git (MLflow records the source commit), so this is not a unit test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from mainstem.params import load_params
from mainstem.training.model import Fitted, fit_model, run_record
from mainstem.training.registry import (
    PROMOTED_TAG,
    REQUEST_ID_TAG,
    Registration,
    connect,
    ensure_experiment,
    record_training,
    served_request,
)
from tests.conftest import ROOT
from tests.mlflow_store import empty_store


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    return connect(f"sqlite:///{empty_store(tmp_path / 'mlflow' / 'mlflow.db')}")


def _fitted() -> Fitted:
    features = np.array([[float(i)] for i in range(20)])
    labels = np.array(["A" if i < 10 else "B" for i in range(20)])
    held_out = np.arange(20) % 4 == 0
    model = fit_model(load_params(ROOT).train, features[~held_out], labels[~held_out], seed=1)
    quality = {"accuracy": 1.0, "f1_macro": 1.0}
    return Fitted(model, ["x"], held_out, quality, features[:5])


def test_a_recorded_training_is_found_again_by_its_request(
    client: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    registration = Registration(ensure_experiment(client, "e"), "grade", "production", "f1_macro")
    fitted = _fitted()
    run = run_record(load_params(ROOT).train, fitted, 20, {REQUEST_ID_TAG: "abc"})

    recorded = record_training(client, registration, fitted, run, tmp_path / "model")

    assert (tmp_path / "model" / "MLmodel").is_file()
    assert recorded.model_version == "1"
    assert recorded.promotion.promoted
    assert client.get_run(recorded.run_id).data.tags[PROMOTED_TAG] == "true"
    assert served_request(client, registration, "abc") == recorded
    assert served_request(client, registration, "abd") is None
    # MLflow's process-wide store was this workspace's for the recording only
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
