"""The batch path as Airflow runs it by default: one task for the waiting batches, then the rest.

In: the workspace and the DAG's id. Out, for `data_pipeline_dag` to wire:
- `process_batch`: `waiting_batches.process_waiting` as one task (in the workspace pool): the
  waiting batches, one lineage commit each, `CURRENT_MASTER_ROWS` published and the retrain
  decision made and recorded after each; it ends the run (everything after it skipped) when
  nothing could be claimed, and fails it, with the reason, on a rejected batch;
- `next_runs` (runs whatever `process_batch` did): `trigger_retrain_policy` when a decision said
  retrain or could not be made here, and `drain_queue` (this DAG again) while a batch waits.
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

TRIGGER_POLICY = "trigger_retrain_policy"
DRAIN = "drain_queue"


def follow_ups(result: dict[str, Any] | None, waiting: bool) -> list[str]:
    """The tasks `next_runs` picks from `process_batch`'s result (None when it failed)."""
    chosen = []
    if result is not None and result.get("policy_needed"):
        chosen.append(TRIGGER_POLICY)
    more_waiting = result["more_waiting"] if result is not None else waiting
    if more_waiting:
        chosen.append(DRAIN)
    return chosen


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
    with stage_parent(context["ti"]):
        done = process_waiting(
            FlowRun(workspace, owner_id, lambda rows: Variable.set(ROWS_VARIABLE, str(rows))),
            lambda rows: _decide(workspace, dag_id, rows),
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
    """`process_batch` >> `next_runs` >> [`trigger_retrain_policy`, `drain_queue`]; the first."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    @task.short_circuit(task_id=BATCH_FLOW.name, pool=WORKSPACE_POOL)
    def process_batch() -> dict[str, Any] | None:
        return _process(workspace)

    @task.branch(trigger_rule="all_done")
    def next_runs() -> list[str]:
        from airflow.sdk import get_current_context

        from mainstem.flow.queue_drain import batches_waiting

        result = get_current_context()["ti"].xcom_pull(task_ids=BATCH_FLOW.name)
        return follow_ups(result, result is None and batches_waiting(workspace))

    first = process_batch()
    policy = TriggerDagRunOperator(
        task_id=TRIGGER_POLICY,
        trigger_dag_id=POLICY_DAG,
        trigger_run_id="after__{{ run_id }}",
        skip_when_already_exists=True,
    )
    again = TriggerDagRunOperator(task_id=DRAIN, trigger_dag_id=dag_id)
    first >> next_runs() >> [policy, again]
    return first
