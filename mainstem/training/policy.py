"""The retrain policy: should the production model be retrained now, and why.

In: an MLflow client, where to look (experiment, registered model name, production alias), the
current master row count (the `CURRENT_MASTER_ROWS` Variable or DVC metrics), the raw
`RETRAIN_THRESHOLD_ROWS` value (Variable text, or None when unset) with its default from params,
and whether the caller already knows of a training in flight. Out: a RetrainDecision holding every
input it used, the verdict and a one-line reason; `explain` renders it as the chain a person reads.

The chain: production alias → version → run → its feature/split/model versions → the newest
FINISHED run with those versions → its `master_rows` → new rows = current - that → retrain when
new rows >= threshold. No Airflow here; the DAG passes the Variables' values in.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from mainstem.errors import PolicyError
from mainstem.names import ROWS_VARIABLE, THRESHOLD_VARIABLE
from mainstem.params import Params
from mainstem.training.registry import (
    connect,
    experiment_name,
    find_experiment,
    resolve_production,
    store_errors,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

THRESHOLD_DEFAULT_SOURCE = "params.yaml retrain.threshold_rows"


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, why, and every input the verdict was computed from."""

    retrain: bool
    reason: str
    basis: str  # bootstrap | growth | shrunk | no_compatible_run | in_flight
    tracking_uri: str
    experiment: str
    model_name: str
    alias: str
    production_version: str | None
    production_run_id: str | None
    feature_version: str | None
    split_version: str | None
    model_version: str | None
    filter_string: str | None
    compatible_run_id: str | None
    trained_master_rows: int | None
    current_master_rows: int
    rows_source: str
    new_rows: int | None
    threshold: int
    threshold_source: str
    training_in_flight: bool
    in_flight_run_id: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: what the task returns and passes as `conf` to the training DAG."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RetrainDecision:
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(value))
        if missing:
            raise PolicyError(f"a retrain decision lacks {', '.join(missing)}")
        return cls(**{name: value[name] for name in names})


def parse_count(raw: object, what: str) -> int:
    """A row count given as an int or as the text of an Airflow Variable."""
    if isinstance(raw, bool):
        raise PolicyError(f"{what} must be a whole number of rows >= 0, got {raw!r}")
    if isinstance(raw, str):
        text = raw.strip()
        if not (text.isascii() and text.isdigit()):
            raise PolicyError(f"{what} must be a whole number of rows >= 0, got {raw!r}")
        return int(text)
    if not isinstance(raw, int) or raw < 0:
        raise PolicyError(f"{what} must be a whole number of rows >= 0, got {raw!r}")
    return raw


def parse_threshold(raw: object, default: int, source: str) -> tuple[int, str]:
    """The threshold and where it came from: the Variable's value, or the default when unset."""
    if raw is None:
        return parse_count(default, THRESHOLD_DEFAULT_SOURCE), THRESHOLD_DEFAULT_SOURCE
    return parse_count(raw, source), source


def compatible_filter(feature_version: str, split_version: str, model_version: str) -> str:
    """The `search_runs` filter for FINISHED runs trained with the same three versions."""
    versions = {
        "feature_version": feature_version,
        "split_version": split_version,
        "model_version": model_version,
    }
    for key, value in versions.items():
        if "'" in value or "\\" in value:
            raise PolicyError(f"param {key}={value!r} cannot be used in an MLflow filter")
    clauses = [f"params.{key} = '{value}'" for key, value in versions.items()]
    return " AND ".join([*clauses, "attributes.status = 'FINISHED'"])


def _running_run(
    client: MlflowClient, experiment_id: str | None, started_after_ms: int | None
) -> str | None:
    """The newest RUNNING run, ignoring runs started before `started_after_ms`.

    A training killed outright never marks its run finished; past the training timeout such a
    run is taken for dead, so it cannot block retraining forever.
    """
    if experiment_id is None:
        return None
    query = "attributes.status = 'RUNNING'"
    if started_after_ms is not None:
        query += f" AND attributes.start_time > {started_after_ms}"
    with store_errors(client.tracking_uri):
        running = client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
        )
    return running[0].info.run_id if running else None


def _last_compatible(
    client: MlflowClient, experiment_id: str | None, filter_string: str
) -> tuple[str, int] | tuple[None, None]:
    if experiment_id is None:
        return None, None
    with store_errors(client.tracking_uri):
        runs = client.search_runs(
            [experiment_id],
            filter_string,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        return None, None
    run = runs[0]
    rows = run.data.metrics.get("master_rows")
    if rows is None:
        raise PolicyError(
            f"run {run.info.run_id} (the newest compatible FINISHED run) has no metric "
            "master_rows, so new rows cannot be counted; log master_rows on it or delete the run"
        )
    if rows != int(rows) or rows < 0:
        raise PolicyError(f"run {run.info.run_id} has master_rows={rows}, not a row count")
    return run.info.run_id, int(rows)


def decide_retrain(
    client: MlflowClient,
    *,
    experiment: str,
    model_name: str,
    alias: str,
    current_master_rows: object,
    threshold_raw: object,
    threshold_default: int,
    rows_source: str = ROWS_VARIABLE,
    threshold_source: str = THRESHOLD_VARIABLE,
    training_in_flight: bool = False,
    running_started_after_ms: int | None = None,
) -> RetrainDecision:
    """Compute the decision from the MLflow store and the given values.

    A RUNNING run counts as a training in flight unless it started before
    `running_started_after_ms` (None: every RUNNING run counts).

    Raises PolicyError for an unusable input and RegistryError when the store cannot be read:
    an unreachable store is never taken as "no retrain".
    """
    threshold, threshold_from = parse_threshold(threshold_raw, threshold_default, threshold_source)
    current = parse_count(current_master_rows, rows_source)
    experiment_id = find_experiment(client, experiment)
    running = _running_run(client, experiment_id, running_started_after_ms)
    production = resolve_production(client, model_name, alias)
    filter_string = None
    compatible_id, trained_rows = None, None
    if production is not None:
        filter_string = compatible_filter(
            production.feature_version, production.split_version, production.model_version
        )
        compatible_id, trained_rows = _last_compatible(client, experiment_id, filter_string)
    new_rows = None if trained_rows is None else current - trained_rows

    if training_in_flight or running is not None:
        basis = "in_flight"
        retrain = False
        reason = (
            f"training run {running} is still RUNNING in experiment '{experiment}'; not starting "
            "a second (if that training died, mark the run FAILED)"
            if running is not None
            else "the caller reports a training already in flight; not starting a second"
        )
    elif production is None:
        basis = "bootstrap"
        retrain = current >= threshold and current > 0
        comparison = ">=" if retrain else "<"
        if current == 0:
            reason = f"bootstrap: no {model_name}@{alias} yet, and the master is empty"
        else:
            reason = (
                f"bootstrap: no {model_name}@{alias} yet, and the master has {current} rows "
                f"{comparison} threshold {threshold}"
            )
    elif new_rows is None:
        basis = "no_compatible_run"
        retrain = True
        reason = (
            f"no FINISHED run in experiment '{experiment}' has the production versions "
            f"({production.feature_version}, {production.split_version}, "
            f"{production.model_version}), so the rows it saw are unknown; retraining"
        )
    elif new_rows < 0:
        basis = "shrunk"
        retrain = False
        reason = (
            f"the master shrank by {-new_rows} rows since run {compatible_id} "
            f"({trained_rows} -> {current}), e.g. under a stricter contract; not retraining"
        )
    else:
        basis = "growth"
        retrain = new_rows >= threshold
        reason = f"{new_rows} new rows {'>=' if retrain else '<'} threshold {threshold}"
    return RetrainDecision(
        retrain=retrain,
        reason=reason,
        basis=basis,
        tracking_uri=client.tracking_uri,
        experiment=experiment,
        model_name=model_name,
        alias=alias,
        production_version=production.version if production else None,
        production_run_id=production.run_id if production else None,
        feature_version=production.feature_version if production else None,
        split_version=production.split_version if production else None,
        model_version=production.model_version if production else None,
        filter_string=filter_string,
        compatible_run_id=compatible_id,
        trained_master_rows=trained_rows,
        current_master_rows=current,
        rows_source=rows_source,
        new_rows=new_rows,
        threshold=threshold,
        threshold_source=threshold_from,
        training_in_flight=training_in_flight,
        in_flight_run_id=running,
    )


def decide(
    params: Params,
    current_master_rows: object,
    threshold_raw: object,
    *,
    rows_source: str = ROWS_VARIABLE,
    threshold_source: str = THRESHOLD_VARIABLE,
    training_in_flight: bool = False,
) -> RetrainDecision:
    """The decision for a workspace's params: its store, experiment, model name and alias."""
    started_after = time.time() - params.retrain_training_timeout_seconds
    return decide_retrain(
        connect(tracking_uri(params)),
        experiment=experiment_name(params),
        model_name=params.train.model_name,
        alias=params.train.production_alias,
        current_master_rows=current_master_rows,
        threshold_raw=threshold_raw,
        threshold_default=params.retrain_threshold_rows,
        rows_source=rows_source,
        threshold_source=threshold_source,
        training_in_flight=training_in_flight,
        running_started_after_ms=int(started_after * 1000),
    )


def explain(decision: RetrainDecision) -> list[str]:
    """The decision chain as short lines, in the order the policy walked it."""
    d = decision
    lines = [f"store: {d.tracking_uri}, experiment '{d.experiment}'"]
    if d.production_version is None:
        lines.append(f"production: {d.model_name}@{d.alias} is not set yet")
    else:
        lines.append(
            f"production: {d.model_name}@{d.alias} -> version {d.production_version}, "
            f"run {d.production_run_id} ({d.feature_version}, {d.split_version}, "
            f"{d.model_version})"
        )
        lines.append(f"search: {d.filter_string}, newest first")
        if d.compatible_run_id is None:
            lines.append("last compatible run: none")
        else:
            lines.append(
                f"last compatible run: {d.compatible_run_id}, trained on "
                f"{d.trained_master_rows} rows"
            )
    rows = f"master: {d.current_master_rows} rows now ({d.rows_source})"
    if d.new_rows is not None:
        rows += f" -> {d.new_rows} new"
    lines.append(rows)
    lines.append(f"threshold: {d.threshold} rows ({d.threshold_source})")
    if d.in_flight_run_id or d.training_in_flight:
        lines.append(f"in flight: {d.in_flight_run_id or 'reported by the caller'}")
    lines.append(f"decision: {'RETRAIN' if d.retrain else 'no retrain'} - {d.reason}")
    return lines
