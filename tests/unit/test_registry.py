"""The MLflow store as mainstem uses it: production resolution, promotion, the experiment."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from mainstem.errors import RegistryError
from mainstem.training.registry import ensure_experiment, promote_if_better, resolve_production
from tests.mlflow_store import log_run, register

MODEL = "produce-grade"
ALIAS = "production"


def _new_version(client: MlflowClient, experiment: str, score: float, start: int) -> str:
    return register(client, MODEL, log_run(client, experiment, start=start, score=score))


def alias_target(client: MlflowClient) -> str:
    return str(client.get_registered_model(MODEL).aliases[ALIAS])


def test_a_worse_model_keeps_the_alias_where_it_is(client: MlflowClient, tmp_path: Path) -> None:
    experiment = ensure_experiment(client, "e")
    first = _new_version(client, experiment, 0.90, start=1_000)
    promotion = promote_if_better(client, MODEL, ALIAS, first, "f1_macro", 0.90)
    assert promotion.promoted and promotion.alias_version == first

    worse = _new_version(client, experiment, 0.80, start=2_000)
    promotion = promote_if_better(client, MODEL, ALIAS, worse, "f1_macro", 0.80)
    assert not promotion.promoted and promotion.alias_version == first
    assert "stays" in promotion.reason and alias_target(client) == first

    equal = _new_version(client, experiment, 0.90, start=3_000)
    promotion = promote_if_better(client, MODEL, ALIAS, equal, "f1_macro", 0.90)
    assert promotion.promoted and alias_target(client) == equal == "3"


def test_production_resolves_to_the_versions_its_run_was_trained_with(
    client: MlflowClient,
) -> None:
    experiment = ensure_experiment(client, "e")
    run_id = log_run(client, experiment, start=1_000, feature_version="f7")
    register(client, MODEL, run_id, ALIAS)
    production = resolve_production(client, MODEL, ALIAS)
    assert production is not None
    assert (production.version, production.run_id) == ("1", run_id)
    assert (production.feature_version, production.split_version) == ("f7", "s1")
    assert resolve_production(client, MODEL, "staging") is None
    assert resolve_production(client, "no-such-model", ALIAS) is None


def test_production_run_without_versions_is_an_error_naming_it(client: MlflowClient) -> None:
    experiment = ensure_experiment(client, "e")
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id)
    register(client, MODEL, run_id, ALIAS)
    with pytest.raises(RegistryError, match=f"run {run_id} .*no param feature_version"):
        resolve_production(client, MODEL, ALIAS)


def test_experiment_keeps_its_artifacts_beside_a_sqlite_store(
    client: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    experiment = ensure_experiment(client, "e")
    assert ensure_experiment(client, "e") == experiment and experiment != "0"
    location = client.get_experiment(experiment).artifact_location
    assert location == (tmp_path / "mlflow" / "artifacts").as_uri()


def test_a_deleted_experiment_is_an_error(client: MlflowClient) -> None:
    client.delete_experiment(ensure_experiment(client, "e"))
    with pytest.raises(RegistryError, match=r"experiment 'e' .* is deleted"):
        ensure_experiment(client, "e")
