"""The MLflow store as mainstem uses it: where it is, the experiment, and the production model.

In: params (or a tracking URI) and a registered model name. Out: a client bound to one store for
both tracking and the registry; the experiment's id (created with an artifact location beside a
SQLite store, so artifacts never land in the current directory); the production model resolved
through its alias down to the three versions its run was trained with; and the promotion rule.
A store that cannot be reached is a RegistryError naming the URI, never a silent "nothing found".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.errors import RegistryError
from mainstem.params import Params

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
VERSION_PARAMS = ("feature_version", "split_version", "model_version")


def tracking_uri(params: Params) -> str:
    """`MLFLOW_TRACKING_URI` when set, else the workspace's SQLite store from params."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{params.train.tracking_db}"


def experiment_name(params: Params) -> str:
    return os.environ.get(EXPERIMENT_ENV) or params.train.experiment


def artifact_location(uri: str) -> str | None:
    """Artifacts beside a SQLite store; any other store (a server) decides for itself."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = Path(uri[len(prefix) :]).resolve()
    return (database.parent / "artifacts").as_uri()


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn any failure to talk to the store into a RegistryError that names the store."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except RegistryError:
        raise
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"MLflow store {uri}: {exc}") from exc
    except Exception as exc:
        # SQLAlchemy and requests raise their own types past MLflow for a broken store.
        if type(exc).__module__.split(".")[0] in {"sqlalchemy", "requests", "urllib3"}:
            raise RegistryError(f"MLflow store {uri}: {exc}") from exc
        raise


def connect(uri: str) -> MlflowClient:
    """A client that uses `uri` for tracking and for the model registry alike."""
    from mlflow import MlflowClient

    with store_errors(uri):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_experiment(client: MlflowClient, name: str) -> str | None:
    """The id of the active experiment called `name`, or None when there is none."""
    with store_errors(client.tracking_uri):
        experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None
    if experiment.lifecycle_stage != "active":
        raise RegistryError(
            f"MLflow experiment '{name}' ({experiment.experiment_id}) is deleted; restore it "
            "or set another train.experiment"
        )
    return str(experiment.experiment_id)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created (with its artifact location) if needed."""
    found = find_experiment(client, name)
    if found is not None:
        return found
    with store_errors(client.tracking_uri):
        return str(
            client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri))
        )


@dataclass(frozen=True)
class Production:
    """The model version the production alias points at, and what its run was trained with."""

    model_name: str
    alias: str
    version: str
    run_id: str
    feature_version: str
    split_version: str
    model_version: str
    metrics: dict[str, float]


def _registered_aliases(client: MlflowClient, model_name: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {str(k): str(v) for k, v in (registered.aliases or {}).items()}


def resolve_production(client: MlflowClient, model_name: str, alias: str) -> Production | None:
    """Follow name → alias → version → run; None when the model or its alias does not exist yet."""
    with store_errors(client.tracking_uri):
        aliases = _registered_aliases(client, model_name)
        if aliases is None or alias not in aliases:
            return None
        version = client.get_model_version(model_name, aliases[alias])
        if not version.run_id:
            raise RegistryError(
                f"model {model_name} version {version.version} ('{alias}') has no run; "
                "register versions from a training run"
            )
        run = client.get_run(version.run_id)
    missing = [key for key in VERSION_PARAMS if key not in run.data.params]
    if missing:
        raise RegistryError(
            f"run {run.info.run_id} behind {model_name}@{alias} (version {version.version}) has "
            f"no param {', '.join(missing)}; it was not logged by the train stage"
        )
    return Production(
        model_name=model_name,
        alias=alias,
        version=str(version.version),
        run_id=run.info.run_id,
        feature_version=run.data.params["feature_version"],
        split_version=run.data.params["split_version"],
        model_version=run.data.params["model_version"],
        metrics=dict(run.data.metrics),
    )


@dataclass(frozen=True)
class Promotion:
    """Where the production alias points after a new version was registered, and why."""

    promoted: bool
    alias_version: str
    reason: str


def should_promote(new_score: float, production_score: float | None) -> bool:
    """The first version is promoted; later ones when at least as good."""
    return production_score is None or new_score >= production_score


def promote_if_better(
    client: MlflowClient, model_name: str, alias: str, version: str, metric: str, score: float
) -> Promotion:
    """Point `alias` at `version` unless the current production version scores better."""
    production = resolve_production(client, model_name, alias)
    current = production.metrics.get(metric) if production else None
    if production is not None and not should_promote(score, current):
        return Promotion(
            False,
            production.version,
            f"version {version} {metric}={score:.4f} is below production version "
            f"{production.version} ({current:.4f}); '{alias}' stays",
        )
    with store_errors(client.tracking_uri):
        client.set_registered_model_alias(model_name, alias, version)
    if production is None:
        reason = f"version {version} is the first with '{alias}'"
    elif current is None:
        reason = f"version {production.version} has no {metric}; version {version} replaces it"
    else:
        reason = f"version {version} {metric}={score:.4f} >= {current:.4f} of {production.version}"
    return Promotion(True, version, reason)


@dataclass(frozen=True)
class TrainingRun:
    """One logged, registered training run and what became of the production alias."""

    run_id: str
    model_version: str
    promotion: Promotion


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "skops")]


def record_training(
    client: MlflowClient,
    experiment_id: str,
    model: Any,
    sample: object,
    run: dict[str, dict[str, Any]],
    registered: tuple[str, str, str],
    model_dir: Path,
) -> TrainingRun:
    """Log one FINISHED run holding `run` (params, metrics, tags) and the model; register it.

    `registered` is (model name, alias, evaluation metric). The version is registered after the
    run has finished, so a registered version never points at a run still in flight. The logged
    model is then downloaded into `model_dir` (which must not exist), so the DVC-tracked copy is
    byte for byte the registered one.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model_name, alias, metric = registered
    uri = client.tracking_uri
    with store_errors(uri):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        with mlflow.start_run(experiment_id=experiment_id) as active:
            mlflow.log_params(run["params"])
            mlflow.log_metrics(run["metrics"])
            mlflow.set_tags(run["tags"])
            signature = infer_signature(sample, model.predict(sample))
            logged = mlflow.sklearn.log_model(
                model, name="model", pip_requirements=_pip_requirements(), signature=signature
            )
        version = mlflow.register_model(logged.model_uri, model_name)
        mlflow.artifacts.download_artifacts(artifact_uri=logged.model_uri, dst_path=str(model_dir))
    promotion = promote_if_better(
        client, model_name, alias, str(version.version), metric, run["metrics"][metric]
    )
    return TrainingRun(active.info.run_id, str(version.version), promotion)
