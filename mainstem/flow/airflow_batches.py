"""The batch path as Airflow runs it by default: one task for the waiting batches, then the rest.

In: the workspace and the DAG's id. Out, for `data_pipeline_dag` to wire:
- `process_batch`: `waiting_batches.process_waiting` as one task (in the workspace pool): the
  waiting batches, one lineage commit each, `CURRENT_MASTER_ROWS` published and the retrain
  decision made and recorded after each; it ends the run (everything after it skipped) when
  nothing could be claimed, and fails it, with the reason, on a rejected batch;
- `retrain_wanted` >> `trigger_retrain_policy`, when a decision said retrain or could not be
  made here; and, whatever `process_batch` did, `batches_waiting` >> `drain_queue` (this DAG
  again while a batch waits), as with a task per step.
No second DAG run decides after each batch, and a queue pays one task start and one scheduler
hop per run, not one per step of every batch. `MAINSTEM_SINGLE_TASK=0` brings back a task per
step and the policy DAG after every batch (`airflow_tasks.path_tasks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import task

from mainstem.flow.sequences import BATCH_FLOW
from mainstem.names import POLICY_DAG, ROWS_VARIABLE, THRESHOLD_VARIABLE, TRAIN_DAG, WORKSPACE_POOL


def _decide(workspace: Path, dag_id: str, rows: int) -> dict[str, Any]:
    """The retrain decision, as `retrain_policy_dag`'s `decide` makes it, for `rows`."""
    from airflow.sdk import Variable
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    from mainstem.flow.policy import decide_retrain

    in_flight = RuntimeTaskInstance.get_dr_count(dag_id=TRAIN_DAG, states=["queued", "running"])
    threshold = Variable.get(THRESHOLD_VARIABLE, default=None)
    return decide_retrain(workspace, str(rows), threshold, in_flight > 0, decided_by=dag_id)


def _process(workspace: Path) -> dict[str, Any] | None:
    from airflow.sdk import Variable, get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from mainstem.errors import BatchRejectedError
    from mainstem.flow.runner import FlowRun
    from mainstem.flow.waiting_batches import batches_per_run, process_waiting
    from mainstem.openlineage.airflow_provider import stage_parent

    context = get_current_context()
    dag_id = context["dag"].dag_id
    owner_id = f"{dag_id}/{context['run_id']}"
    start = {"requested_by": owner_id, **(context["dag_run"].conf or {})}

    def decide(rows: int) -> dict[str, Any]:
        return _decide(workspace, dag_id, rows)

    with stage_parent(context["ti"]):
        done = process_waiting(
            FlowRun(workspace, owner_id, lambda rows: Variable.set(ROWS_VARIABLE, str(rows))),
            decide,
            batches_per_run(),
            start,
        )
    if done is None:
        return None
    if done.rejected is not None:
        context["ti"].xcom_push(key="batches", value=done.to_json())
        # chained, so the alert callback finds the rejection and names the batch
        raise AirflowFailException(done.rejected) from BatchRejectedError(done.rejected)
    return done.to_json()


def batch_tasks(workspace: Path, dag_id: str) -> Any:
    """`process_batch`, then `retrain_wanted` >> `trigger_retrain_policy` and, whatever its
    outcome, `batches_waiting` >> `drain_queue`; the first task."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from mainstem.flow.ready_trigger import drain_tasks

    @task.short_circuit(task_id=BATCH_FLOW.name, pool=WORKSPACE_POOL)
    def process_batch() -> dict[str, Any] | None:
        return _process(workspace)

    @task.short_circuit
    def retrain_wanted(done: Any) -> bool:  # process_batch's XCom, a dict at run time
        return bool(done["policy_needed"])

    first = process_batch()
    # a failed process_batch leaves the trigger upstream_failed: the run fails (red)
    retrain_wanted(first) >> TriggerDagRunOperator(
        task_id="trigger_retrain_policy",
        trigger_dag_id=POLICY_DAG,
        trigger_run_id="after__{{ run_id }}",
        skip_when_already_exists=True,
    )
    first >> drain_tasks(workspace, dag_id)
    return first
