"""The retrain policy: should the production model be retrained now, and why.

In: the current master row count (the `CURRENT_MASTER_ROWS` Variable or DVC metrics), the raw
`RETRAIN_THRESHOLD_ROWS` value (Variable text, or None when unset) with its default from params,
what the MLflow store holds, and whether the caller already knows of a training in flight. Out: a
RetrainDecision holding every input it used, the verdict and a one-line reason; `explain` renders
it as the chain a person reads.

With `retrain.drift` on, a last batch that drifted from the master production was trained on also
retrains (`apply_drift`); the drift is read from the validate metrics (`workspace_drift`) and given
to the decision as plain values, like the counts.

Read, decide, write: `look_up` reads the store (production alias → version → run → its
feature/split/model versions → the newest FINISHED run with those versions → its `master_rows`,
and any RUNNING run), `verdict` decides from plain values with no I/O (new rows = current - that;
retrain when new rows >= threshold), and `decide` joins them for a workspace. No Airflow here;
the DAG passes the Variables' values in.
"""

from __future__ import annotations

import math
import time
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from mainstem.durable import read_json_object
from mainstem.errors import PolicyError
from mainstem.names import ROWS_VARIABLE, THRESHOLD_VARIABLE
from mainstem.params import Params
from mainstem.training.failures import Blocker, training_blocker
from mainstem.training.registry import (
    MASTER_MD5_TAG,
    Production,
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
    basis: (
        str  # bootstrap | growth | drift | shrunk | no_compatible_run | in_flight | config_error
        # | failed
    )
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
    drift_enabled: bool = False
    drift_status: str = "not_measured"
    drifted_columns: tuple[str, ...] = ()
    drift_batch_id: str | None = None
    drift_reference_md5: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: what the task returns and passes as `conf` to the training DAG.

        Lists, never tuples: Airflow's XCom serializes a tuple as an object of its own
        (`__classname__`, `__data__`), which a reader would then take for the columns.
        """
        return {**asdict(self), "drifted_columns": list(self.drifted_columns)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RetrainDecision:
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(required - set(value))
        if missing:
            raise PolicyError(f"a retrain decision lacks {', '.join(missing)}")
        found = {name: value[name] for name in names if name in value}
        if "drifted_columns" in found:
            found["drifted_columns"] = tuple(found["drifted_columns"])
        return cls(**found)


@dataclass(frozen=True)
class Scope:
    """Where the policy looks: the experiment, and the registered model and its production alias."""

    experiment: str
    model_name: str
    alias: str


@dataclass(frozen=True)
class CompatibleRun:
    """The newest FINISHED run trained with production's versions, and the rows it saw."""

    run_id: str
    master_rows: int
    master_md5: str | None = None


@dataclass(frozen=True)
class StoreFacts:
    """What one MLflow store holds for a scope, as far as the verdict needs it.

    `filter_string` is the search that found `compatible` (None without a production model);
    `running_run_id` is a RUNNING training run young enough to be alive.
    """

    tracking_uri: str
    scope: Scope
    production: Production | None
    filter_string: str | None
    compatible: CompatibleRun | None
    running_run_id: str | None


@dataclass(frozen=True)
class Counts:
    """The two numbers the verdict compares, each with where it came from."""

    current_master_rows: int
    rows_source: str
    threshold: int
    threshold_source: str


@dataclass(frozen=True)
class DriftFacts:
    """The last batch's drift as the validate metrics record it, and whether it may retrain.

    `reference_md5` is the master the batch was compared with: production's training master
    when the batch ran. `status` is drifted, stable, no_reference, no_rows,
    reference_unavailable or not_measured.
    """

    enabled: bool
    status: str
    drifted_columns: tuple[str, ...]
    batch_id: str | None
    reference_md5: str | None


@dataclass(frozen=True)
class Verdict:
    """Retrain or not, on which basis, in one line; and the new rows when they could be counted."""

    retrain: bool
    basis: str
    reason: str
    new_rows: int | None


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


def parse_counts(
    current_master_rows: object,
    threshold_raw: object,
    threshold_default: int,
    rows_source: str = ROWS_VARIABLE,
    threshold_source: str = THRESHOLD_VARIABLE,
) -> Counts:
    """Both counts checked, the threshold first; a PolicyError names the unusable one."""
    threshold, threshold_from = parse_threshold(threshold_raw, threshold_default, threshold_source)
    current = parse_count(current_master_rows, rows_source)
    return Counts(current, rows_source, threshold, threshold_from)


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


def _in_flight_verdict(facts: StoreFacts, new_rows: int | None) -> Verdict:
    running = facts.running_run_id
    if running is None:
        reason = "the caller reports a training already in flight; not starting a second"
    else:
        reason = (
            f"training run {running} is still RUNNING in experiment '{facts.scope.experiment}'; "
            "not starting a second (if that training died, mark the run FAILED)"
        )
    return Verdict(False, "in_flight", reason, new_rows)


def _bootstrap_verdict(current_rows: int, threshold: int, scope: Scope) -> Verdict:
    retrain = current_rows >= threshold and current_rows > 0
    prefix = f"bootstrap: no {scope.model_name}@{scope.alias} yet, and the master"
    if current_rows == 0:
        reason = f"{prefix} is empty"
    else:
        comparison = ">=" if retrain else "<"
        reason = f"{prefix} has {current_rows} rows {comparison} threshold {threshold}"
    return Verdict(retrain, "bootstrap", reason, None)


def _no_compatible_verdict(production: Production, experiment: str) -> Verdict:
    reason = (
        f"no FINISHED run in experiment '{experiment}' has the production versions "
        f"({production.feature_version}, {production.split_version}, "
        f"{production.model_version}), so the rows it saw are unknown; retraining"
    )
    return Verdict(True, "no_compatible_run", reason, None)


def _rows_verdict(current_rows: int, threshold: int, compatible: CompatibleRun) -> Verdict:
    new_rows = current_rows - compatible.master_rows
    if new_rows < 0:
        reason = (
            f"the master shrank by {-new_rows} rows since run {compatible.run_id} "
            f"({compatible.master_rows} -> {current_rows}), e.g. under a stricter contract; "
            "not retraining"
        )
        return Verdict(False, "shrunk", reason, new_rows)
    retrain = new_rows >= threshold
    reason = f"{new_rows} new rows {'>=' if retrain else '<'} threshold {threshold}"
    return Verdict(retrain, "growth", reason, new_rows)


def verdict(
    current_rows: int,
    threshold: int,
    facts: StoreFacts,
    caller_in_flight: bool,
    blocker: Blocker | None = None,
) -> Verdict:
    """The verdict from plain values; no I/O.

    A training in flight (a RUNNING run in `facts`, or `caller_in_flight`) always wins: no second
    training starts. Without production it is a bootstrap; without a compatible run the rows
    production saw are unknown, so it retrains; otherwise new rows are compared to the threshold.
    New rows are still counted when a training is in flight, for the explanation. A `blocker`
    (a declaration that does not fit the contract, or a training that already failed on this
    master and configuration) comes next: no training starts that is known to fail.
    """
    compatible = facts.compatible
    new_rows = None if compatible is None else current_rows - compatible.master_rows
    if caller_in_flight or facts.running_run_id is not None:
        return _in_flight_verdict(facts, new_rows)
    if blocker is not None:
        return Verdict(False, blocker.basis, blocker.reason, new_rows)
    if facts.production is None:
        return _bootstrap_verdict(current_rows, threshold, facts.scope)
    if compatible is None:
        return _no_compatible_verdict(facts.production, facts.scope.experiment)
    return _rows_verdict(current_rows, threshold, compatible)


def apply_drift(
    found: Verdict, drift: DriftFacts | None, compatible: CompatibleRun | None
) -> Verdict:
    """The growth verdict, with the last batch's drift taken into account; no I/O.

    Drift only speaks where growth decided (production and a compatible run exist, no training in
    flight or blocked). With `retrain.drift` on, a drifted batch retrains when it was compared with
    the master of the newest compatible run: once a training has seen a newer master, the same
    drift retrains no more, so a retrained model that was not promoted does not retrain forever.
    """
    if drift is None or not drift.drifted_columns or found.basis != "growth":
        return found
    columns = ", ".join(drift.drifted_columns)
    batch = f"batch {drift.batch_id}" if drift.batch_id else "the last batch"
    if found.retrain:
        return replace(found, reason=f"{found.reason}; {batch} also drifted in {columns}")
    if not drift.enabled:
        note = f"{batch} drifted in {columns} (retrain.drift is off)"
        return replace(found, reason=f"{found.reason}; {note}")
    if compatible is None or drift.reference_md5 != compatible.master_md5:
        note = (
            f"{batch} drifted in {columns} from master {drift.reference_md5}, but run "
            f"{compatible.run_id if compatible else '?'} has trained on a newer master since"
        )
        return replace(found, reason=f"{found.reason}; {note}")
    reason = (
        f"{batch} drifted from the data production was trained on, in {columns} "
        f"(retrain.drift is on; {found.new_rows} new rows < the row threshold)"
    )
    return Verdict(True, "drift", reason, found.new_rows)


def drift_facts(metrics: dict[str, Any] | None, enabled: bool) -> DriftFacts:
    """The drift facts in a validate metrics dict (None or without drift: not measured)."""
    drift = (metrics or {}).get("drift") or {}
    columns = str(drift.get("drifted_columns") or "")
    return DriftFacts(
        enabled=enabled,
        status=str(drift.get("status", "not_measured")),
        drifted_columns=tuple(c for c in columns.split(", ") if c),
        batch_id=str((metrics or {}).get("last_batch_id") or "") or None,
        reference_md5=str(drift.get("reference_md5") or "") or None,
    )


def workspace_drift(params: Params) -> DriftFacts:
    """The drift of the workspace's last batch, from its validate metrics file."""
    return drift_facts(read_json_object(params.validate.metrics_file), params.retrain_drift)


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
) -> CompatibleRun | None:
    if experiment_id is None:
        return None
    with store_errors(client.tracking_uri):
        runs = client.search_runs(
            [experiment_id],
            filter_string,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        return None
    run = runs[0]
    return compatible_run(
        run.info.run_id, run.data.metrics.get("master_rows"), run.data.tags.get(MASTER_MD5_TAG)
    )


def compatible_run(run_id: str, rows: float | None, master_md5: str | None = None) -> CompatibleRun:
    """The newest compatible FINISHED run, given its `master_rows` metric (None: not logged) and
    its `master_md5` tag (None: not set)."""
    if rows is None:
        raise PolicyError(
            f"run {run_id} (the newest compatible FINISHED run) has no metric "
            "master_rows, so new rows cannot be counted; log master_rows on it or delete the run"
        )
    if not math.isfinite(rows) or rows != int(rows) or rows < 0:
        raise PolicyError(f"run {run_id} has master_rows={rows}, not a row count")
    return CompatibleRun(run_id, int(rows), master_md5)


def look_up(
    client: MlflowClient, scope: Scope, running_started_after_ms: int | None = None
) -> StoreFacts:
    """Read what the verdict needs from the store: production, its last compatible run, and
    a RUNNING run, unless it started before `running_started_after_ms` (None: any counts).

    Raises PolicyError for a compatible run without a usable `master_rows`, and RegistryError when
    the store cannot be read: an unreachable store is never taken as "no retrain".
    """
    experiment_id = find_experiment(client, scope.experiment)
    running = _running_run(client, experiment_id, running_started_after_ms)
    production = resolve_production(client, scope.model_name, scope.alias)
    filter_string = None
    compatible = None
    if production is not None:
        filter_string = compatible_filter(
            production.feature_version, production.split_version, production.model_version
        )
        compatible = _last_compatible(client, experiment_id, filter_string)
    return StoreFacts(client.tracking_uri, scope, production, filter_string, compatible, running)


def make_decision(
    counts: Counts,
    facts: StoreFacts,
    training_in_flight: bool,
    blocker: Blocker | None = None,
    drift: DriftFacts | None = None,
) -> RetrainDecision:
    """The verdict on `counts`, `facts` and `drift`, recorded with every input it used; no I/O."""
    found = verdict(
        counts.current_master_rows, counts.threshold, facts, training_in_flight, blocker
    )
    found = apply_drift(found, drift, facts.compatible)
    production, compatible = facts.production, facts.compatible
    return RetrainDecision(
        retrain=found.retrain,
        reason=found.reason,
        basis=found.basis,
        tracking_uri=facts.tracking_uri,
        experiment=facts.scope.experiment,
        model_name=facts.scope.model_name,
        alias=facts.scope.alias,
        production_version=production.version if production else None,
        production_run_id=production.run_id if production else None,
        feature_version=production.feature_version if production else None,
        split_version=production.split_version if production else None,
        model_version=production.model_version if production else None,
        filter_string=facts.filter_string,
        compatible_run_id=compatible.run_id if compatible else None,
        trained_master_rows=compatible.master_rows if compatible else None,
        current_master_rows=counts.current_master_rows,
        rows_source=counts.rows_source,
        new_rows=found.new_rows,
        threshold=counts.threshold,
        threshold_source=counts.threshold_source,
        training_in_flight=training_in_flight,
        in_flight_run_id=facts.running_run_id,
        drift_enabled=drift.enabled if drift else False,
        drift_status=drift.status if drift else "not_measured",
        drifted_columns=drift.drifted_columns if drift else (),
        drift_batch_id=drift.batch_id if drift else None,
        drift_reference_md5=drift.reference_md5 if drift else None,
    )


def decide_retrain(
    client: MlflowClient,
    scope: Scope,
    counts: Counts,
    *,
    training_in_flight: bool = False,
    running_started_after_ms: int | None = None,
) -> RetrainDecision:
    """Look up `scope` in the store behind `client`, then decide on `counts`."""
    facts = look_up(client, scope, running_started_after_ms)
    return make_decision(counts, facts, training_in_flight)


def workspace_scope(params: Params) -> Scope:
    """The experiment (`MLFLOW_EXPERIMENT_NAME` wins), model name and alias of a workspace."""
    return Scope(experiment_name(params), params.train.model_name, params.train.production_alias)


@dataclass(frozen=True)
class PolicyInputs:
    """The counts the policy is given, in the raw form they come in, and where each came from.

    `current_rows` is the `CURRENT_MASTER_ROWS` Variable's text (or an int); `threshold` None
    means the default from params.yaml.
    """

    current_rows: object = None
    rows_source: str = ROWS_VARIABLE
    threshold: object = None
    threshold_source: str = THRESHOLD_VARIABLE
    training_in_flight: bool = False


def workspace_counts(params: Params, given: PolicyInputs) -> Counts:
    """The given counts parsed, with the threshold's default from the workspace's params."""
    return parse_counts(
        given.current_rows,
        given.threshold,
        params.retrain_threshold_rows,
        given.rows_source,
        given.threshold_source,
    )


def running_cutoff_ms(params: Params) -> int:
    """RUNNING runs started before this (ms since the epoch) are taken for dead trainings."""
    return int((time.time() - params.retrain_training_timeout_seconds) * 1000)


def decide(params: Params, given: PolicyInputs) -> RetrainDecision:
    """The decision for a workspace's params: its store, experiment, model name and alias.

    Raises PolicyError for an unusable count (before the store is read) and RegistryError when
    the store cannot be read.
    """
    counts = workspace_counts(params, given)
    client = connect(tracking_uri(params))
    facts = look_up(client, workspace_scope(params), running_cutoff_ms(params))
    blocker = training_blocker(params)
    return make_decision(counts, facts, given.training_in_flight, blocker, workspace_drift(params))


def _drift_line(d: RetrainDecision) -> str:
    switch = "on" if d.drift_enabled else "off"
    batch = f"last batch {d.drift_batch_id}" if d.drift_batch_id else "last batch"
    if d.drifted_columns:
        found = (
            f"drifted columns {', '.join(d.drifted_columns)} (vs master {d.drift_reference_md5})"
        )
    elif d.drift_status == "no_reference":
        found = "no reference (no production model when it ran)"
    elif d.drift_status == "stable":
        found = f"no drifted column (vs master {d.drift_reference_md5})"
    else:
        found = d.drift_status.replace("_", " ")
    return f"drift: retrain.drift {switch}; {batch}: {found}"


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
    lines.append(_drift_line(d))
    if d.in_flight_run_id or d.training_in_flight:
        lines.append(f"in flight: {d.in_flight_run_id or 'reported by the caller'}")
    lines.append(f"decision: {'RETRAIN' if d.retrain else 'no retrain'} - {d.reason}")
    return lines
