"""data_pipeline_dag: wiring only; the steps are `mainstem.flow.sequences.BATCH_FLOW`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag

from mainstem.flow.airflow_batches import batch_tasks
from mainstem.flow.airflow_tasks import path_tasks, single_task_mode
from mainstem.flow.alerts import task_alerts
from mainstem.flow.ready_trigger import batch_schedule, drain_tasks
from mainstem.flow.sequences import BATCH_FLOW
from mainstem.names import DATA_DAG, POLICY_DAG, workspace_for

WORKSPACE = workspace_for(__file__)


@dag(
    dag_id=DATA_DAG,
    schedule=batch_schedule(WORKSPACE),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15), **task_alerts(WORKSPACE)},
    tags=["mainstem"],
)
def data_pipeline_dag() -> None:
    """
    ### Process the delivered batches, oldest first, and decide on retraining after each

    Seconds after a batch's `_READY` appears (an asset watcher, `ready_batch`, in the
    triggerer), and every 5 minutes in any case, one task, `process_batch`, takes the batches
    waiting in the drop folder's queue one after another (at most `MAINSTEM_BATCHES_PER_RUN`,
    default 10). For each: **claim** it (`_READY` becomes the `_PROCESSING` lock, which records
    this run as owner), run **`dvc repro merge`** (ingest, validate against the active
    contract, upsert into the master), **`dvc push`**, **record lineage** (one git commit per
    batch with `dvc.lock` and the metrics), **publish** `master_rows`, **release** the drop
    folder (then rebuild the pipeline page, `reports/pipeline.html`), and **decide** whether to
    retrain (`mainstem.flow.policy.decide_retrain`, recorded for `mainstem status`). These are
    the steps of `mainstem.flow.sequences.BATCH_FLOW`, the same list `mainstem process` runs.
    Then `retrain_wanted` triggers `retrain_policy_dag` when a decision said retrain (or could
    not be made here), and `batches_waiting` runs this DAG again (`drain_queue`) while a batch
    waits. The task stops
    taking batches at the bound and after a decision to retrain.
    With `MAINSTEM_SINGLE_TASK=0` each step is its own task and `retrain_policy_dag` decides
    after every batch (`batches_waiting` → `drain_queue` as above).

    * Skips everything when nothing is ready or a live run holds the lock; recovers a lock
      whose owner died (the takeover is logged).
    * Every step after the claim proves this run still owns the lock and renews it.
    * **Variables written:** `CURRENT_MASTER_ROWS`, from the DVC metrics file `metrics/master.json`.
    * **Variables read:** `RETRAIN_THRESHOLD_ROWS` (optional), for the decision.
    * **On a rejected batch** (refused at the drop folder, or by the contract): it is moved to
      `data/quarantine/<batch_id>/` with its report, the lock is released, and the run fails
      (red) with the reason in the log. The next batch is not blocked.
    * **On a failed DVC or git step** the batch stays claimed; the retry, or the next run once
      the owner is gone, finishes it. Merging is idempotent, so no row is applied twice.
    * DVC and git steps share the `mainstem_workspace` pool (1 slot) with the training DAG.
    * **Alerts** (when the Airflow connection `mainstem_alerts` exists): one JSON POST for a
      rejected batch, or for a task that failed for good, with the batch, the reason and the
      command to run next (`mainstem.flow.alerts`).
    """
    if single_task_mode(default=True):
        batch_tasks(WORKSPACE, DATA_DAG)
        return
    trigger_retrain_policy = TriggerDagRunOperator(
        task_id="trigger_retrain_policy",
        trigger_dag_id=POLICY_DAG,
        trigger_run_id="after__{{ run_id }}",
        skip_when_already_exists=True,
    )
    _, last = path_tasks(BATCH_FLOW, WORKSPACE)
    last >> trigger_retrain_policy
    last >> drain_tasks(WORKSPACE, DATA_DAG)


data_pipeline_dag()
