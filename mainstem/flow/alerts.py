"""Alerts for an operator who is not watching the Airflow UI.

In: what happened to a task of one of the DAGs (its exception, or a training's outcome). Out: at
most one alert per event, POSTed as JSON through the `HttpNotifier` of Airflow's HTTP provider
to the Airflow connection `mainstem_alerts`: a rejected batch, a DAG run that failed (a task that
failed for good fails its run: every task is on the path), and a training whose version did not
take the production alias. Each alert says which batch, why, and the command to run next.

Off by default: without the connection nothing is sent. The connection holds the webhook's URL
(and any token) in Airflow's own store, never in params.yaml or git:
`airflow connections add mainstem_alerts --conn-type http --conn-host https://hooks.example/x`.
The alerts are built by pure functions; the callbacks below only gather what they need from the
task's context and the workspace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.errors import BatchRejectedError
from mainstem.names import ALERTS_CONNECTION, DATA_DAG

if TYPE_CHECKING:
    from mainstem.training.request import TrainingOutcome

log = logging.getLogger(__name__)
TRAIN_TASKS = frozenset({"train", "train_model"})  # one task per step, or the whole path


@dataclass(frozen=True)
class Alert:
    """One event an operator should hear about."""

    kind: str  # batch_rejected | run_failed | not_promoted
    dag_id: str
    run_id: str
    batch: str | None
    reason: str
    next_command: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rejected_batch_alert(where: tuple[str, str], batch: str, reason: str, workspace: Path) -> Alert:
    """A batch refused at the drop folder or by the contract, and now in quarantine."""
    dag_id, run_id = where
    return Alert(
        "batch_rejected",
        dag_id,
        run_id,
        batch,
        reason,
        f"mainstem report --workspace {workspace} {batch}  (then fix the source and deliver "
        f"again: mainstem submit --workspace {workspace} FOLDER)",
    )


def failed_run_alert(
    where: tuple[str, str], task_id: str, batch: str | None, reason: str, workspace: Path
) -> Alert:
    """A task that failed for good, failing its run; retrying it is the operator's call."""
    dag_id, run_id = where
    return Alert(
        "run_failed",
        dag_id,
        run_id,
        batch,
        f"task {task_id} failed: {reason}",
        f"mainstem status --workspace {workspace}  (then, once the cause is fixed: "
        f"airflow tasks clear {dag_id} --task-regex '^{task_id}$' --only-failed --yes)",
    )


def not_promoted_alert(
    where: tuple[str, str], outcome: TrainingOutcome, batch: str | None, workspace: Path
) -> Alert:
    """A training whose registered version scored below production, which stays where it was."""
    dag_id, run_id = where
    return Alert(
        "not_promoted",
        dag_id,
        run_id,
        batch,
        f"model version {outcome.model_version} ({outcome.eval_metric}={outcome.score:.4f}) "
        f"scored below production, which stays at version {outcome.production_version}",
        f"mainstem retrain explain --workspace {workspace}  (compare MLflow run "
        f"{outcome.run_id} with the production version before moving the alias by hand)",
    )


def rejection(exception: BaseException | None) -> BatchRejectedError | None:
    """The BatchRejectedError behind a task's failure, if that is what failed it."""
    while exception is not None:
        if isinstance(exception, BatchRejectedError):
            return exception
        exception = exception.__cause__
    return None


def rejected_batch_id(error: BatchRejectedError) -> str:
    """The batch a BatchRejectedError names: its messages start "batch <id>" or "delivery <id>"."""
    words = str(error).split()
    return words[1] if len(words) > 1 else "unknown"


def send(alert: Alert) -> bool:
    """POST the alert through the `mainstem_alerts` connection; False when it is not configured."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.providers.http.notifications.http import HttpNotifier

    try:
        HttpHook.get_connection(ALERTS_CONNECTION)
    except Exception as exc:  # the SDK's or core's AirflowNotFoundException, by context
        if type(exc).__name__ != "AirflowNotFoundException":
            raise
        log.info("alerts are off (no Airflow connection %s): %s", ALERTS_CONNECTION, alert.reason)
        return False
    log.warning("alert %s: %s", alert.kind, json.dumps(alert.to_json()))
    # notify() directly: the payload is data, not a template (a reason may hold braces)
    HttpNotifier(http_conn_id=ALERTS_CONNECTION, json=alert.to_json()).notify({})
    return True


def _batch_of_run(context: Any, workspace: Path) -> str | None:
    """The batch this run claimed (data_pipeline_dag), else the last batch in the master."""
    from mainstem.durable import read_json_object
    from mainstem.params import load_params

    ti = context["ti"]
    if ti.dag_id == DATA_DAG:
        claim = ti.xcom_pull(task_ids="claim")
        return str(claim["batch_id"]) if isinstance(claim, dict) and claim.get("batch_id") else None
    metrics = read_json_object(load_params(workspace).merge.metrics_file) or {}
    return str(metrics.get("last_batch_id") or "") or None


def task_alerts(workspace: Path) -> dict[str, Callable[[Any], None]]:
    """The task callbacks a DAG passes in `default_args` so its events send alerts."""

    def on_failure(context: Any) -> None:
        ti = context["ti"]
        where = (ti.dag_id, ti.run_id)
        rejected = rejection(context.get("exception"))
        if rejected is not None:
            send(rejected_batch_alert(where, rejected_batch_id(rejected), str(rejected), workspace))
            return
        reason = str(context.get("exception") or "no exception recorded")
        batch = _batch_of_run(context, workspace)
        send(failed_run_alert(where, ti.task_id, batch, reason, workspace))

    def on_success(context: Any) -> None:
        from mainstem.params import load_params
        from mainstem.training.request import training_outcome

        ti = context["ti"]
        if ti.task_id not in TRAIN_TASKS:
            return
        outcome = training_outcome(load_params(workspace))  # what this task's `dvc repro` made
        if not outcome.promoted:
            batch = _batch_of_run(context, workspace)
            send(not_promoted_alert((ti.dag_id, ti.run_id), outcome, batch, workspace))

    return {"on_failure_callback": on_failure, "on_success_callback": on_success}
