"""data_pipeline_dag: wiring only; every step is a function in mainstem.flow.dag_steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Variable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from mainstem.names import DATA_DAG, POLICY_DAG, WORKSPACE_POOL, workspace_for

WORKSPACE = workspace_for(__file__)


def _owner_id() -> str:
    context = get_current_context()
    return f"{context['dag'].dag_id}/{context['run_id']}"


@dag(
    dag_id=DATA_DAG,
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15)},
    tags=["mainstem"],
)
def data_pipeline_dag() -> None:
    """
    ### Process at most one delivered batch

    Every 5 minutes: **claim** the batch waiting in the drop folder (`_READY` becomes the
    `_PROCESSING` lock, which records this run as owner), run **`dvc repro merge`** (ingest,
    validate against the active contract, upsert into the master), **`dvc push`**, **record
    lineage** (one git commit with `dvc.lock` and the metrics), **publish** `master_rows`,
    **release** the drop folder, and trigger `retrain_policy_dag`.

    * Skips everything when nothing is ready or a live run holds the lock; recovers a lock
      whose owner died (the takeover is logged).
    * **Variables written:** `CURRENT_MASTER_ROWS`, from the DVC metrics file `metrics/master.json`.
    * **On a rejected batch** (refused at the drop folder, or by the contract): it is moved to
      `data/quarantine/<batch_id>/` with its report, the lock is released, and the run fails
      (red) with the reason in the log. The next batch is not blocked.
    * **On a failed DVC or git step** the batch stays claimed; the retry, or the next run once
      the owner is gone, finishes it. Merging is idempotent, so no row is applied twice.
    * DVC and git steps share the `mainstem_workspace` pool (1 slot) with the training DAG.
    """

    @task.short_circuit
    def claim() -> dict[str, Any] | None:
        from mainstem.flow import dag_steps

        try:
            return dag_steps.claim(WORKSPACE, _owner_id())
        except dag_steps.BatchRejectedError as exc:
            raise AirflowFailException(str(exc)) from exc

    @task(pool=WORKSPACE_POOL)
    def repro() -> None:
        from mainstem.flow import dag_steps

        dag_steps.repro(WORKSPACE, _owner_id())

    @task(pool=WORKSPACE_POOL)
    def push() -> None:
        from mainstem.flow import dag_steps

        dag_steps.push(WORKSPACE, _owner_id())

    @task(pool=WORKSPACE_POOL)
    def record_lineage(claimed: dict[str, Any]) -> dict[str, Any]:
        from mainstem.flow import dag_steps

        return dag_steps.record_lineage(WORKSPACE, _owner_id(), bool(claimed["duplicate"]))

    @task
    def publish() -> int:
        from mainstem.flow import dag_steps

        return dag_steps.publish(WORKSPACE, lambda key, value: Variable.set(key, value))

    @task
    def release() -> dict[str, Any]:
        from mainstem.flow import dag_steps

        try:
            return dag_steps.release(WORKSPACE, _owner_id())
        except dag_steps.BatchRejectedError as exc:
            raise AirflowFailException(str(exc)) from exc

    trigger_retrain_policy = TriggerDagRunOperator(
        task_id="trigger_retrain_policy",
        trigger_dag_id=POLICY_DAG,
        trigger_run_id="after__{{ run_id }}",
        skip_when_already_exists=True,
    )

    claimed = claim()
    lineage = record_lineage(claimed)
    claimed >> repro() >> push() >> lineage >> publish() >> release() >> trigger_retrain_policy


data_pipeline_dag()
