"""data_pipeline_dag under `dag.test()`, with real DVC, git and files in a temporary workspace."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mainstem.commands import dvc, git
from mainstem.intake import lock
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from mainstem.training.decision_log import last_decision
from tests.conftest import Deliver
from tests.func.dags.conftest import set_variable, take_queued, variable


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_dag_structure(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    dag = dagbag.dags["data_pipeline_dag"]
    assert dag.timetable.timetable.expression == "*/5 * * * *"
    (watcher,) = dag.timetable.asset_condition.watchers
    assert watcher.trigger.serialize()[0] == "mainstem.flow.ready_trigger.ReadyBatchTrigger"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    # one task for the batches (and their decisions), then what follows them
    after = dag.get_task("process_batch").downstream_task_ids
    assert after == {"retrain_wanted", "batches_waiting"}
    assert dag.get_task("retrain_wanted").downstream_task_ids == {"trigger_retrain_policy"}
    assert dag.get_task("batches_waiting").downstream_task_ids == {"drain_queue"}
    assert dag.doc_md
    assert "CURRENT_MASTER_ROWS" in dag.doc_md


def test_good_batch_grows_master_and_publishes_rows(
    dagbag: Any, workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=30, bad_rows=2))
    run = dagbag.dags["data_pipeline_dag"].test()

    assert str(run.state) == "success", _states(run)
    params = load_params(workspace)
    master = pd.read_parquet(params.merge.master_dir)
    metric = json.loads(params.merge.metrics_file.read_text())["master_rows"]
    assert len(master) == metric == 28
    assert variable("CURRENT_MASTER_ROWS") == str(metric)
    assert not (params.ingest.incoming_dir / "_PROCESSING").exists()
    assert "up to date" in dvc(["status"], workspace).stdout
    assert "batch-001" in git(["log", "-1", "--format=%s"], workspace).stdout
    # the decision is made in this run; 28 rows are short of the threshold: no policy run
    decided = run.get_task_instance("process_batch").xcom_pull(task_ids="process_batch")
    assert decided["decision"]["retrain"] is False
    assert decided["names"] == ["batch-001"]
    assert (last_decision(params) or {}).get("decided_by") == "data_pipeline_dag"
    assert take_queued("retrain_policy_dag") == []


def test_rejected_batch_is_quarantined_and_the_next_one_goes_through(
    dagbag: Any, workspace: Path, deliver: Deliver
) -> None:
    dag = dagbag.dags["data_pipeline_dag"]
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=20, drop_column="grade"))
    rejected = dag.test()

    assert str(rejected.state) == "failed"
    states = _states(rejected)
    assert states["process_batch"] == "failed"
    assert states["trigger_retrain_policy"] == "upstream_failed"
    assert states["drain_queue"] == "skipped"  # nothing else waits
    (quarantined,) = params.ingest.quarantine_dir.iterdir()
    assert (quarantined / "files" / "batch-001.csv").exists()
    assert json.loads((quarantined / "report.json").read_text())["status"] == "rejected"
    assert not (params.ingest.incoming_dir / "_PROCESSING").exists()

    deliver(BatchSpec(2, first_id=1, rows=20))
    accepted = dag.test()
    assert str(accepted.state) == "success", _states(accepted)
    assert len(pd.read_parquet(params.merge.master_dir)) == 20


def test_stale_lock_of_a_dead_owner_is_recovered(
    dagbag: Any, workspace: Path, deliver: Deliver
) -> None:
    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=12))
    exited = [sys.executable, "-c", "import os; print(os.getpid())"]
    pid = int(subprocess.run(exited, capture_output=True, check=True).stdout)
    long_ago = time.time() - 3600
    owner = lock.LockOwner("data_pipeline_dag/crashed", "gone-host", pid, 0.0, long_ago, long_ago)
    assert lock.acquire(params.ingest.incoming_dir, owner)

    run = dagbag.dags["data_pipeline_dag"].test()

    assert str(run.state) == "success", _states(run)
    assert len(pd.read_parquet(params.merge.master_dir)) == 12
    assert not (params.ingest.incoming_dir / "_PROCESSING").exists()


def test_nothing_ready_skips_everything(dagbag: Any, workspace: Path) -> None:
    before = git(["rev-parse", "HEAD"], workspace).stdout
    run = dagbag.dags["data_pipeline_dag"].test()

    states = _states(run)
    assert states.pop("process_batch") == "success"
    assert set(states.values()) == {"skipped"}
    assert git(["rev-parse", "HEAD"], workspace).stdout == before


def _queue_two(workspace: Path, tmp_path: Path) -> None:
    from mainstem.intake.submit import submit_to_queue
    from mainstem.local.samples import make_batch

    params = load_params(workspace)
    for number, name in ((1, "older"), (2, "newer")):
        spec = BatchSpec(number, first_id=number * 100, rows=10)
        submit_to_queue([make_batch(tmp_path / name, spec)], params.ingest.incoming_dir, name)
        time.sleep(0.05)  # distinct _READY times: "older" is claimed first


def test_one_run_takes_the_waiting_batches_with_one_commit_and_decision_each(
    dagbag: Any, workspace: Path, tmp_path: Path
) -> None:
    _queue_two(workspace, tmp_path)

    run = dagbag.dags["data_pipeline_dag"].test()

    assert str(run.state) == "success", _states(run)
    assert _states(run)["drain_queue"] == "skipped"  # both taken: nothing waits
    assert take_queued("data_pipeline_dag") == []
    done = run.get_task_instance("process_batch").xcom_pull(task_ids="process_batch")
    assert done["names"] == ["older", "newer"]
    assert [batch["master_rows"] for batch in done["batches"]] == [10, 20]
    subjects = git(["log", "-2", "--format=%s"], workspace).stdout.splitlines()
    assert "newer" in subjects[0]
    assert "older" in subjects[1]
    assert variable("CURRENT_MASTER_ROWS") == "20"


def test_a_run_triggers_the_next_while_batches_wait_in_the_queue(
    dagbag: Any, workspace: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MAINSTEM_BATCHES_PER_RUN", "1")  # the bound leaves "newer" waiting
    dag = dagbag.dags["data_pipeline_dag"]
    params = load_params(workspace)
    _queue_two(workspace, tmp_path)

    first = dag.test()
    again = take_queued("data_pipeline_dag")
    second = dag.test()

    assert str(first.state) == "success", _states(first)
    assert _states(first)["drain_queue"] == "success"
    assert again == [{}]
    assert str(second.state) == "success", _states(second)
    assert _states(second)["drain_queue"] == "skipped"
    assert take_queued("data_pipeline_dag") == []
    subjects = git(["log", "-2", "--format=%s"], workspace).stdout
    assert subjects.index("newer") < subjects.index("older")
    assert len(pd.read_parquet(params.merge.master_dir)) == 20


def test_a_decision_to_retrain_ends_the_run_and_hands_over_to_the_policy(
    dagbag: Any, workspace: Path, tmp_path: Path
) -> None:
    from mainstem.intake.submit import submit_to_queue
    from mainstem.local.samples import make_batch

    params = load_params(workspace)
    for number in (1, 2, 3):
        spec = BatchSpec(number, first_id=number * 100, rows=10)
        name = f"b{number}"
        submit_to_queue([make_batch(tmp_path / name, spec)], params.ingest.incoming_dir, name)
        time.sleep(0.05)
    take_queued("retrain_policy_dag")
    set_variable("RETRAIN_THRESHOLD_ROWS", "15")  # reached by the second batch
    try:
        run = dagbag.dags["data_pipeline_dag"].test()
    finally:
        set_variable("RETRAIN_THRESHOLD_ROWS", None)

    assert str(run.state) == "success", _states(run)
    done = run.get_task_instance("process_batch").xcom_pull(task_ids="process_batch")
    assert done["names"] == ["b1", "b2"]  # b3 waits for the run after the training's turn
    assert done["decision"]["retrain"] is True
    assert take_queued("retrain_policy_dag") == [{}]
    assert take_queued("data_pipeline_dag") == [{}]
