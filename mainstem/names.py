"""The names mainstem shares with Airflow: DAG ids, the workspace pool, Variables, connections.

In: a DAG file's path and the environment. Out: names and a path. The DAG files import this at
parse time, so it imports nothing heavy; the local Airflow launcher, the policy and `mainstem
status` use the same names.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DAG = "data_pipeline_dag"
POLICY_DAG = "retrain_policy_dag"
TRAIN_DAG = "train_pipeline_dag"
ZONE_DAG = "drop_zone_worker_dag"  # stateless workers draining the S3 drop zone
WORKSPACE_POOL = "mainstem_workspace"  # one slot: DVC and git steps of a workspace never overlap
WORKSPACE_ENV = "MAINSTEM_WORKSPACE"
WORKER_NAME_ENV = "MAINSTEM_WORKER_NAME"  # a Celery worker's name, in its environment
ROWS_VARIABLE = "CURRENT_MASTER_ROWS"  # written by data_pipeline_dag after each batch
THRESHOLD_VARIABLE = "RETRAIN_THRESHOLD_ROWS"  # optional; params.yaml retrain.threshold_rows
ALERTS_CONNECTION = "mainstem_alerts"  # an HTTP connection; alerts are off until it exists


def workspace_for(dag_file: str) -> Path:
    """`MAINSTEM_WORKSPACE` when set, else the workspace whose `dags/` holds `dag_file`."""
    return Path(os.environ.get(WORKSPACE_ENV) or Path(dag_file).resolve().parents[1])
