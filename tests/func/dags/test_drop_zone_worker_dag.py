"""drop_zone_worker_dag parses, and runs its one task in the workspace pool with a retry."""

from __future__ import annotations

from typing import Any

from mainstem.names import WORKSPACE_POOL, ZONE_DAG


def test_the_drop_zone_dag_is_one_pooled_task_with_retries_and_typed_params(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    dag = dagbag.dags[ZONE_DAG]
    [task] = dag.tasks
    assert task.task_id == "drain_drop_zone"
    assert task.pool == WORKSPACE_POOL
    assert task.retries >= 1  # a killed worker's batch is finished by the retry
    assert dag.max_active_runs == 1
    assert set(dag.params) == {"git_remote", "max_batches", "lease_wait_seconds"}
    assert "MAINSTEM_GIT_REMOTE" in dag.doc_md
