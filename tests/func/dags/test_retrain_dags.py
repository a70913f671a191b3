"""retrain_policy_dag and train_pipeline_dag under `dag.test()`, chained as the scheduler would.

A batch goes through data_pipeline_dag; the queued retrain_policy_dag run is replayed; its queued
train_pipeline_dag run is replayed with the decision as conf; real DVC, git and an MLflow SQLite
store in the workspace throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from mainstem.training.registry import connect, resolve_production, tracking_uri
from tests.conftest import Deliver
from tests.func.dags.conftest import set_variable, take_queued


def _xcom(run: Any, task_id: str) -> Any:
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti.xcom_pull(task_ids=task_id)


@pytest.fixture
def threshold_20() -> Any:
    set_variable("RETRAIN_THRESHOLD_ROWS", "20")
    yield
    set_variable("RETRAIN_THRESHOLD_ROWS", None)


def test_structure(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    policy = dagbag.dags["retrain_policy_dag"]
    train = dagbag.dags["train_pipeline_dag"]
    assert policy.schedule is None
    assert train.schedule is None
    assert policy.max_active_runs == 1
    assert train.max_active_runs == 1
    assert "trigger_training" in policy.get_task("should_retrain").downstream_task_ids
    assert train.get_task("train").downstream_task_ids == {"push"}
    assert all(t.pool == "mainstem_workspace" for t in train.tasks)


def test_batch_policy_training_loop(
    dagbag: Any, workspace: Path, deliver: Deliver, threshold_20: None
) -> None:
    params = load_params(workspace)
    take_queued("retrain_policy_dag")  # runs other tests' data_pipeline_dag queued
    deliver(BatchSpec(1, first_id=1, rows=40))
    assert str(dagbag.dags["data_pipeline_dag"].test().state) == "success"
    (policy_conf,) = take_queued("retrain_policy_dag")

    policy_run = dagbag.dags["retrain_policy_dag"].test(run_conf=policy_conf)
    assert str(policy_run.state) == "success"
    decision = _xcom(policy_run, "decide")
    assert decision["retrain"]
    assert decision["basis"] == "bootstrap"
    (train_conf,) = take_queued("train_pipeline_dag")
    assert train_conf["decision"]["reason"] == decision["reason"]

    train_run = dagbag.dags["train_pipeline_dag"].test(run_conf=train_conf)
    assert str(train_run.state) == "success"
    trained = _xcom(train_run, "train")
    production = resolve_production(
        connect(tracking_uri(params)), params.train.model_name, params.train.production_alias
    )
    assert production is not None
    assert production.version == trained["model_version"] == "1"
    assert trained["master_rows"] == 40

    again = dagbag.dags["retrain_policy_dag"].test()
    second = _xcom(again, "decide")
    assert not second["retrain"]
    assert second["new_rows"] == 0
    assert "0 new rows < threshold 20" in second["reason"]
    states = {ti.task_id: str(ti.state) for ti in again.get_task_instances()}
    assert states["trigger_training"] == "skipped"
    assert take_queued("train_pipeline_dag") == []


def test_training_without_a_decision_fails_at_once(dagbag: Any, workspace: Path) -> None:
    params = load_params(workspace)
    run = dagbag.dags["train_pipeline_dag"].test(run_conf={})
    assert str(run.state) == "failed"
    (train,) = [ti for ti in run.get_task_instances() if ti.task_id == "train"]
    assert train.try_number == 1  # not retried: without a decision a retry cannot succeed
    assert not params.train.metrics_file.exists() or '"trained": true' not in (
        params.train.metrics_file.read_text()
    )
