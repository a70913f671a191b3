"""train_pipeline_dag: wiring only; the steps are `mainstem.flow.sequences.TRAINING_FLOW`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag

from mainstem.flow.airflow_tasks import path_tasks
from mainstem.flow.alerts import task_alerts
from mainstem.flow.sequences import TRAINING_FLOW
from mainstem.names import TRAIN_DAG, workspace_for

WORKSPACE = workspace_for(__file__)


@dag(
    dag_id=TRAIN_DAG,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30), **task_alerts(WORKSPACE)},
    tags=["mainstem"],
)
def train_pipeline_dag() -> None:
    """
    ### Train, register and maybe promote a model on the current master

    Triggered by `retrain_policy_dag` with `conf = {"decision": {...}}`. **train** writes the
    train request (the decision, the master's DVC hash and row count) and runs
    **`dvc repro train`**: it trains, logs one MLflow run, registers a version, and moves the
    production alias only if the new version is at least as good. Then **`dvc push`**, and one
    **lineage** commit (then the pipeline page, `reports/pipeline.html`, is rebuilt). These are
    the steps of `mainstem.flow.sequences.TRAINING_FLOW`, the same list the CLI runs; with
    `MAINSTEM_SINGLE_TASK=1` they run as one task, `train_model`.

    * **One training at a time:** `max_active_runs=1`, and every step holds the
      `mainstem_workspace` pool slot shared with `data_pipeline_dag`.
    * **Variables:** none read or written.
    * **Without a decision in conf** the run fails at once; no retry can help.
    * **On failure** the request stays in the workspace; a retry re-runs the stage, which finds
      the MLflow run that already served the request instead of training again. The production
      alias only moves after a successful registration.
    * **Alerts** (when the Airflow connection `mainstem_alerts` exists): one JSON POST for a
      version that did not take production, or for a task that failed for good.
    """
    path_tasks(TRAINING_FLOW, WORKSPACE)


train_pipeline_dag()
