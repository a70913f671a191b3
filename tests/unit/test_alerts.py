"""The alerts' content, built from plain values: what an operator reads in each."""

from __future__ import annotations

from pathlib import Path

from mainstem.errors import BatchRejectedError, MainstemError
from mainstem.flow.alerts import (
    failed_run_alert,
    rejected_batch_alert,
    rejected_batch_id,
    rejection,
)

WORKSPACE = Path("/srv/workspace")


def test_the_rejection_behind_a_task_failure_is_found_through_its_causes() -> None:
    rejected = BatchRejectedError("batch 1a2b rejected by contract produce/v1: missing grade")
    failure = RuntimeError(str(rejected))  # as Airflow's fail-fast exception wraps it
    failure.__cause__ = rejected
    assert rejection(failure) is rejected
    assert rejection(MainstemError("disk full")) is None
    assert rejection(None) is None


def test_the_batch_is_the_one_the_rejection_names() -> None:
    assert rejected_batch_id(BatchRejectedError("batch 1a2b rejected by contract")) == "1a2b"
    assert rejected_batch_id(BatchRejectedError("delivery 9f refused at the drop folder")) == "9f"


def test_a_rejected_batch_alert_points_at_its_report() -> None:
    alert = rejected_batch_alert(("data_pipeline_dag", "run-1"), "1a2b", "missing grade", WORKSPACE)
    assert alert.to_json() == {
        "kind": "batch_rejected",
        "dag_id": "data_pipeline_dag",
        "run_id": "run-1",
        "batch": "1a2b",
        "reason": "missing grade",
        "next_command": "mainstem report --workspace /srv/workspace 1a2b  (then fix the source "
        "and deliver again: mainstem submit --workspace /srv/workspace FOLDER)",
    }


def test_a_failed_run_alert_names_the_task_and_how_to_retry_it() -> None:
    alert = failed_run_alert(("data_pipeline_dag", "run-2"), "push", None, "no space", WORKSPACE)
    assert alert.reason == "task push failed: no space"
    assert alert.batch is None
    assert "airflow tasks clear data_pipeline_dag --task-regex '^push$'" in alert.next_command
