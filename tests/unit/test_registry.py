"""The MLflow store as mainstem uses it: production resolution, promotion, the experiment, and
finding the training that already served a request."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from mainstem.errors import RegistryError
from mainstem.training.registry import (
    PRODUCTION_VERSION_TAG,
    PROMOTED_TAG,
    REQUEST_ID_TAG,
    Registration,
    ensure_experiment,
    promote_if_better,
    resolve_production,
    served_request,
)
from tests.mlflow_store import log_run, register

MODEL = "produce-grade"
ALIAS = "production"


def _registration(experiment_id: str) -> Registration:
    return Registration(experiment_id, MODEL, ALIAS, "f1_macro")


def _new_version(client: MlflowClient, experiment: str, score: float, start: int) -> str:
    return register(client, MODEL, log_run(client, experiment, start=start, f1_macro=score))


def alias_target(client: MlflowClient) -> str:
    return str(client.get_registered_model(MODEL).aliases[ALIAS])


def test_a_worse_model_keeps_the_alias_where_it_is(client: MlflowClient) -> None:
    experiment = ensure_experiment(client, "e")
    registration = _registration(experiment)
    first = _new_version(client, experiment, 0.90, start=1_000)
    promotion = promote_if_better(client, registration, first, 0.90)
    assert promotion.promoted
    assert promotion.alias_version == first

    worse = _new_version(client, experiment, 0.80, start=2_000)
    promotion = promote_if_better(client, registration, worse, 0.80)
    assert not promotion.promoted
    assert promotion.alias_version == first
    assert "stays" in promotion.reason
    assert alias_target(client) == first

    equal = _new_version(client, experiment, 0.90, start=3_000)
    promotion = promote_if_better(client, registration, equal, 0.90)
    assert promotion.promoted
    assert alias_target(client) == equal == "3"


def test_production_resolves_to_the_versions_its_run_was_trained_with(
    client: MlflowClient,
) -> None:
    experiment = ensure_experiment(client, "e")
    run_id = log_run(client, experiment, start=1_000, versions={"feature_version": "f7"})
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
    assert ensure_experiment(client, "e") == experiment
    assert experiment != "0"
    location = client.get_experiment(experiment).artifact_location
    assert location == (tmp_path / "mlflow" / "artifacts").as_uri()


def test_a_deleted_experiment_is_an_error(client: MlflowClient) -> None:
    client.delete_experiment(ensure_experiment(client, "e"))
    with pytest.raises(RegistryError, match=r"experiment 'e' .* is deleted"):
        ensure_experiment(client, "e")


def _tagged_run(
    client: MlflowClient, experiment: str, request: str, start: int, status: str = "FINISHED"
) -> str:
    """A run like `log_run`'s, tagged as the training for request `request`."""
    run_id = log_run(client, experiment, start, status, master_rows=60)
    client.set_tag(run_id, REQUEST_ID_TAG, request)
    return run_id


def test_an_unseen_request_was_not_served(client: MlflowClient) -> None:
    experiment = ensure_experiment(client, "e")
    register(client, MODEL, _tagged_run(client, experiment, "other", start=1_000), ALIAS)
    assert served_request(client, _registration(experiment), "abc") is None


def test_a_served_request_reports_its_run_version_and_promotion(client: MlflowClient) -> None:
    experiment = ensure_experiment(client, "e")
    run_id = _tagged_run(client, experiment, "abc", start=1_000)
    version = register(client, MODEL, run_id)
    client.set_tag(run_id, PROMOTED_TAG, "false")
    client.set_tag(run_id, PRODUCTION_VERSION_TAG, "7")

    served = served_request(client, _registration(experiment), "abc")
    assert served is not None
    assert (served.run_id, served.model_version) == (run_id, version)
    assert (served.promotion.promoted, served.promotion.alias_version) == (False, "7")
    assert served.metrics == {"master_rows": 60.0, "f1_macro": 0.9}
    assert ALIAS not in client.get_registered_model(MODEL).aliases  # nothing was promoted again


@pytest.mark.parametrize(
    ("status", "registered"), [("FINISHED", False), ("FAILED", True), ("RUNNING", True)]
)
def test_a_request_is_served_only_by_a_finished_registered_run(
    client: MlflowClient, status: str, registered: bool
) -> None:
    experiment = ensure_experiment(client, "e")
    run_id = _tagged_run(client, experiment, "abc", start=1_000, status=status)
    if registered:
        register(client, MODEL, run_id)
    assert served_request(client, _registration(experiment), "abc") is None


def test_a_served_request_whose_promotion_was_cut_short_is_promoted_now(
    client: MlflowClient,
) -> None:
    experiment = ensure_experiment(client, "e")
    run_id = _tagged_run(client, experiment, "abc", start=1_000)
    version = register(client, MODEL, run_id)

    served = served_request(client, _registration(experiment), "abc")
    assert served is not None
    assert served.promotion.promoted
    assert alias_target(client) == version
    tags = client.get_run(run_id).data.tags
    assert (tags[PROMOTED_TAG], tags[PRODUCTION_VERSION_TAG]) == ("true", version)
