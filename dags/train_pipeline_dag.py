"""train_pipeline_dag: wiring only; the training is the DVC stage `train`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from mainstem.names import TRAIN_DAG, WORKSPACE_POOL, workspace_for

WORKSPACE = workspace_for(__file__)


@dag(
    dag_id=TRAIN_DAG,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["mainstem"],
)
def train_pipeline_dag() -> None:
    """
    ### Train, register and maybe promote a model on the current master

    Triggered by `retrain_policy_dag` with `conf = {"decision": {...}}`. **train** writes the
    train request (the decision, the master's DVC hash and row count) and runs
    **`dvc repro train`**: it trains, logs one MLflow run, registers a version, and moves the
    production alias only if the new version is at least as good. Then **`dvc push`**, and one
    lineage commit.

    * **One training at a time:** `max_active_runs=1`, and every step holds the
      `mainstem_workspace` pool slot shared with `data_pipeline_dag`.
    * **Variables:** none read or written.
    * **On failure** the request stays in the workspace; a retry re-runs the stage, which logs a
      new MLflow run. The production alias only moves after a successful registration.
    """

    @task(pool=WORKSPACE_POOL)
    def train() -> dict[str, Any]:
        from mainstem.flow import dag_steps

        context = get_current_context()
        conf = context["dag_run"].conf or {}
        requested_by = f"{context['dag'].dag_id}/{context['run_id']}"
        try:
            return dag_steps.train(WORKSPACE, conf.get("decision") or {}, requested_by)
        except dag_steps.MissingDecisionError as exc:
            raise AirflowFailException(str(exc)) from exc

    @task(pool=WORKSPACE_POOL)
    def push() -> None:
        from mainstem.flow import dag_steps

        dag_steps.push_training(WORKSPACE)

    @task(pool=WORKSPACE_POOL)
    def record_lineage() -> dict[str, Any]:
        from mainstem.flow import dag_steps

        return dag_steps.record_training(WORKSPACE)

    train() >> push() >> record_lineage()


train_pipeline_dag()
