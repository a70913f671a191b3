"""retrain_policy_dag: wiring only; the decision is `mainstem.flow.policy.decide_retrain`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Variable, dag, task

from mainstem.flow.alerts import task_alerts
from mainstem.names import POLICY_DAG, ROWS_VARIABLE, THRESHOLD_VARIABLE, TRAIN_DAG, workspace_for

WORKSPACE = workspace_for(__file__)


@dag(
    dag_id=POLICY_DAG,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30), **task_alerts(WORKSPACE)},
    tags=["mainstem"],
)
def retrain_policy_dag() -> None:
    """
    ### Decide whether the production model must be retrained

    Triggered by `data_pipeline_dag` when the decision it made after a batch says retrain, or
    could not be made there (after every batch with `MAINSTEM_SINGLE_TASK=0`); not scheduled.
    It decides again, as follows, and records it: it resolves the production
    model in MLflow (registered name, alias, version, run, and that run's feature, split and model
    versions), finds the last FINISHED run with the same three versions, and compares its
    `master_rows` metric with `CURRENT_MASTER_ROWS`. When
    `new_rows >= RETRAIN_THRESHOLD_ROWS` it triggers `train_pipeline_dag` with the decision as
    `conf`; otherwise it stops. The reason is in the `decide` task's log and return value.

    * **Variables read:** `CURRENT_MASTER_ROWS` (set by `data_pipeline_dag`),
      `RETRAIN_THRESHOLD_ROWS` (optional; defaults to `retrain.threshold_rows` in params.yaml).
    * **No production model yet:** bootstrap, train once the master reaches the threshold.
    * **A training already queued or running:** no second one is triggered.
    * **On failure** (MLflow unreachable, a non-integer threshold, a production run without
      `master_rows`) the task fails and retries; it never silently answers "no". Once the
      retries are spent, an alert goes to the `mainstem_alerts` connection, when it exists.
    """

    @task
    def decide() -> dict[str, Any]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        from mainstem.flow.policy import decide_retrain

        in_flight = RuntimeTaskInstance.get_dr_count(dag_id=TRAIN_DAG, states=["queued", "running"])
        return decide_retrain(
            WORKSPACE,
            Variable.get(ROWS_VARIABLE, default=None),
            Variable.get(THRESHOLD_VARIABLE, default=None),
            training_in_flight=in_flight > 0,
        )

    @task.short_circuit
    def should_retrain(decision: Any) -> bool:  # the decide task's XCom, a dict at run time
        return bool(decision["retrain"])

    decision = decide()
    trigger_training = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id=TRAIN_DAG,
        trigger_run_id="after__{{ run_id }}",
        conf={"decision": decision},
        skip_when_already_exists=True,
    )
    should_retrain(decision) >> trigger_training


retrain_policy_dag()
