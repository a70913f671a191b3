"""The MLflow store as mainstem uses it: where it is, the experiment, and the production model.

In: params (or a tracking URI) and a registered model name. Out: a client bound to one store for
both tracking and the registry; the experiment's id (created with an artifact location beside a
SQLite store, so artifacts never land in the current directory); the production model resolved
through its alias down to the three versions its run was trained with; the promotion rule; a
training recorded as a run and a registered version, tagged with the request it served; and the
training that already served a request, found again by that tag.
A store that cannot be reached is a RegistryError naming the URI, never a silent "nothing found".
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.commands import restored
from mainstem.errors import RegistryError
from mainstem.params import Params

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from mainstem.training.model import Fitted

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
VERSION_PARAMS = ("feature_version", "split_version", "model_version")
REQUEST_ID_TAG = "request_id"  # set on every training run: the id of the request it served
PROMOTED_TAG = "promoted"  # "true" or "false", set once the version was registered and compared
PRODUCTION_VERSION_TAG = "production_version"  # where the alias pointed right after that
PROMOTION_REASON_TAG = "promotion_reason"
MASTER_MD5_TAG = "master_md5"  # the DVC hash of the master a training run trained on


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
    return active_experiment_id(name, experiment.experiment_id, experiment.lifecycle_stage)


def active_experiment_id(name: str, experiment_id: object, lifecycle_stage: str) -> str:
    """The id of the experiment called `name` found in a store; a RegistryError when deleted."""
    if lifecycle_stage != "active":
        raise RegistryError(
            f"MLflow experiment '{name}' ({experiment_id}) is deleted; restore it "
            "or set another train.experiment"
        )
    return str(experiment_id)


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
    master_md5: str | None = None  # the DVC hash of the master its run trained on (tag)


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
        run_id = version_run_id(model_name, alias, version.version, version.run_id)
        run = client.get_run(run_id)
    return production_of(
        ProductionVersion(model_name, alias, str(version.version), run.info.run_id),
        run.data.params,
        run.data.metrics,
        run.data.tags.get(MASTER_MD5_TAG),
    )


def version_run_id(model_name: str, alias: str, version: object, run_id: str | None) -> str:
    """The run a registered version came from; a RegistryError when it has none."""
    if not run_id:
        raise RegistryError(
            f"model {model_name} version {version} ('{alias}') has no run; "
            "register versions from a training run"
        )
    return run_id


@dataclass(frozen=True)
class ProductionVersion:
    """Where the production alias leads: model, alias, the version and that version's run."""

    model_name: str
    alias: str
    version: str
    run_id: str


def production_of(
    found: ProductionVersion,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    master_md5: str | None = None,
) -> Production:
    """Production from the run behind the alias: its params must hold the three versions."""
    missing = [key for key in VERSION_PARAMS if key not in params]
    if missing:
        raise RegistryError(
            f"run {found.run_id} behind {found.model_name}@{found.alias} (version "
            f"{found.version}) has no param {', '.join(missing)}; it was not logged by the "
            "train stage"
        )
    return Production(
        model_name=found.model_name,
        alias=found.alias,
        version=found.version,
        run_id=found.run_id,
        feature_version=params["feature_version"],
        split_version=params["split_version"],
        model_version=params["model_version"],
        metrics=dict(metrics),
        master_md5=master_md5,
    )


@dataclass(frozen=True)
class Registration:
    """Where a training goes: the experiment of its run, and the registered model its version
    joins, with the alias it may move and the metric that decides whether it does."""

    experiment_id: str
    model_name: str
    alias: str
    eval_metric: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Promotion:
    """Where the production alias points after a new version was registered, and why."""

    promoted: bool
    alias_version: str
    reason: str


def should_promote(
    new_score: float, production_score: float | None, higher_is_better: bool = True
) -> bool:
    """The first version is promoted; later ones when at least as good in the metric's direction."""
    if production_score is None:
        return True
    if higher_is_better:
        return new_score >= production_score
    return new_score <= production_score


def promote_if_better(
    client: MlflowClient, registration: Registration, version: str, score: float
) -> Promotion:
    """Point the alias at `version` unless the current production version scores better."""
    model_name, alias = registration.model_name, registration.alias
    metric = registration.eval_metric
    production = resolve_production(client, model_name, alias)
    current = production.metrics.get(metric) if production else None
    better = registration.higher_is_better
    if production is not None and not should_promote(score, current, better):
        return Promotion(
            False,
            production.version,
            f"version {version} {metric}={score:.4f} is worse than production version "
            f"{production.version} ({current:.4f}, {'higher' if better else 'lower'} is "
            f"better); '{alias}' stays",
        )
    with store_errors(client.tracking_uri):
        client.set_registered_model_alias(model_name, alias, version)
    if production is None:
        reason = f"version {version} is the first with '{alias}'"
    elif current is None:
        reason = f"version {production.version} has no {metric}; version {version} replaces it"
    else:
        sign = ">=" if registration.higher_is_better else "<="
        reason = (
            f"version {version} {metric}={score:.4f} {sign} {current:.4f} of {production.version}"
        )
    return Promotion(True, version, reason)


@dataclass(frozen=True)
class TrainingRun:
    """One logged, registered training run and what became of the production alias.

    `model_uri` is where the registered version's files are; `metrics` are the run's metrics as
    logged.
    """

    run_id: str
    model_version: str
    model_uri: str
    promotion: Promotion
    metrics: dict[str, float]


_STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextmanager
def process_store(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry store set to `uri` for the block, then back.

    MLflow writes them into `os.environ` too, where every later call of this process (another
    workspace's training, an Airflow stack started from it) would find this store instead of
    its own.
    """
    import mlflow

    tracking, registry = (os.environ.get(name) for name in _STORE_VARIABLES)
    with restored(_STORE_VARIABLES):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(tracking)  # type: ignore[arg-type]
            mlflow.set_registry_uri(registry)  # type: ignore[arg-type]


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "skops")]


def trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to load `model` again: the ones a model mainstem
    has just fitted holds beyond skops' defaults (the tree storage of the tree ensembles)."""
    from skops.io import dumps, get_untrusted_types

    return sorted(get_untrusted_types(data=dumps(model)))


def _record_promotion(
    client: MlflowClient, registration: Registration, run_id: str, version: str
) -> Promotion:
    """Compare the new version with production, move the alias if it wins, and tag the run with
    the outcome, so a repeat of the same request reports what happened the first time."""
    with store_errors(client.tracking_uri):
        score = client.get_run(run_id).data.metrics[registration.eval_metric]
    promotion = promote_if_better(client, registration, version, score)
    with store_errors(client.tracking_uri):
        client.set_tag(run_id, PROMOTED_TAG, "true" if promotion.promoted else "false")
        client.set_tag(run_id, PRODUCTION_VERSION_TAG, promotion.alias_version)
        client.set_tag(run_id, PROMOTION_REASON_TAG, promotion.reason)
    return promotion


def record_training(
    client: MlflowClient,
    registration: Registration,
    fitted: Fitted,
    run: dict[str, dict[str, Any]],
    model_dir: Path,
) -> TrainingRun:
    """Log one FINISHED run holding `run` (params, metrics, tags) and the model; register it.

    The version is registered after the run has finished, so a registered version never points
    at a run still in flight. The logged model is then downloaded into `model_dir` (which must
    not exist), so the DVC-tracked copy is byte for byte the registered one.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    uri = client.tracking_uri
    with store_errors(uri), process_store(uri):
        with mlflow.start_run(experiment_id=registration.experiment_id) as active:
            mlflow.log_params(run["params"])
            mlflow.log_metrics(run["metrics"])
            mlflow.set_tags(run["tags"])
            sample = fitted.sample
            signature = infer_signature(sample, fitted.model.predict(sample))
            logged = mlflow.sklearn.log_model(
                fitted.model,
                name="model",
                pip_requirements=_pip_requirements(),
                signature=signature,
                skops_trusted_types=trusted_types(fitted.model),
            )
        version = mlflow.register_model(logged.model_uri, registration.model_name)
    run_id = active.info.run_id
    promotion = _record_promotion(client, registration, run_id, str(version.version))
    restore_model(client, logged.model_uri, model_dir)
    return TrainingRun(
        run_id, str(version.version), logged.model_uri, promotion, dict(run["metrics"])
    )


def restore_model(client: MlflowClient, model_uri: str, model_dir: Path) -> None:
    """Download the model at `model_uri` into `model_dir`, which must not exist."""
    import mlflow
    import mlflow.artifacts

    uri = client.tracking_uri
    # A `models:/` URI is resolved through the process-wide store, whatever is passed here.
    with store_errors(uri), process_store(uri):
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(model_dir))


def _registered_version(client: MlflowClient, model_name: str, run_id: str) -> ModelVersion | None:
    """The first version of `model_name` registered from `run_id`, or None."""
    with store_errors(client.tracking_uri):
        versions = client.search_model_versions(f"name = '{model_name}' AND run_id = '{run_id}'")
    return min(versions, key=lambda v: int(v.version), default=None)


def _stored_promotion(run: Run) -> Promotion | None:
    tags = run.data.tags
    if PROMOTED_TAG not in tags or PRODUCTION_VERSION_TAG not in tags:
        return None
    return Promotion(
        tags[PROMOTED_TAG] == "true",
        tags[PRODUCTION_VERSION_TAG],
        tags.get(PROMOTION_REASON_TAG, ""),
    )


def served_request(
    client: MlflowClient, registration: Registration, request_id: str
) -> TrainingRun | None:
    """The training that already served request `request_id`: its newest FINISHED run tagged
    with it that has a registered version; None when there is none.

    A run whose promotion was never recorded (the process died after registering the version)
    has it done now, so the request is served completely, once.
    """
    if "'" in request_id or "\\" in request_id:
        raise RegistryError(f"request id {request_id!r} cannot be used in an MLflow filter")
    query = f"tags.{REQUEST_ID_TAG} = '{request_id}' AND attributes.status = 'FINISHED'"
    with store_errors(client.tracking_uri):
        runs = client.search_runs(
            [registration.experiment_id], query, order_by=["attributes.start_time DESC"]
        )
    for run in runs:
        version = _registered_version(client, registration.model_name, run.info.run_id)
        if version is None:
            continue
        promotion = _stored_promotion(run) or _record_promotion(
            client, registration, run.info.run_id, str(version.version)
        )
        return TrainingRun(
            run.info.run_id,
            str(version.version),
            str(version.source),
            promotion,
            dict(run.data.metrics),
        )
    return None
