"""Each path is declared once: the CLI and both Airflow modes run the same steps to the same bytes.

The same batches go through `mainstem process` in one workspace and through `data_pipeline_dag`
under `dag.test()` in an identical one, with a task per step or with the whole path as one task.
The master's parts and manifest, the metrics, `dvc.lock` and the tree of every lineage commit must
be identical byte for byte.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mainstem.commands import git
from mainstem.flow.airflow_tasks import SINGLE_TASK_ENV
from mainstem.flow.batch import process_next_batch
from mainstem.flow.sequences import BATCH_FLOW, TRAINING_FLOW
from mainstem.flow.workspace import configure_remote
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from tests.conftest import ROOT
from tests.func.dags.conftest import take_queued

BATCHES = (
    BatchSpec(1, first_id=1, rows=30, bad_rows=2),
    BatchSpec(2, first_id=21, rows=25),
)


def _dagbag(workspace: Path, single_task: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MAINSTEM_WORKSPACE", str(workspace))
    monkeypatch.setenv(SINGLE_TASK_ENV, "1" if single_task else "0")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _copy(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    configure_remote(dest)
    return dest


def _deliver(workspace: Path, deliveries: Path, spec: BatchSpec) -> None:
    folder = deliveries / spec.name
    if not folder.exists():
        make_batch(folder, spec)
    submit([folder], load_params(workspace).ingest.incoming_dir, spec.name)


def _outputs(workspace: Path) -> dict[str, bytes]:
    """The bytes a user compares: the master's parts and manifest, the metrics, dvc.lock."""
    params = load_params(workspace)
    files = [workspace / "dvc.lock", params.validate.metrics_file, params.merge.metrics_file]
    files += sorted(p for p in params.merge.master_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(workspace)): p.read_bytes() for p in files}


def _lineage_trees(workspace: Path) -> list[str]:
    """The tree of every commit, oldest first: what each lineage commit recorded."""
    log = git(["log", "--reverse", "--format=%T %s"], workspace).stdout
    return log.strip().splitlines()


@pytest.mark.parametrize("single_task", [False, True], ids=["task_per_step", "single_task"])
def test_cli_and_dag_give_identical_master_metrics_lock_and_lineage(
    airflow_db: None,
    workspace_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    single_task: bool,
) -> None:
    by_cli = _copy(workspace_template, tmp_path / "cli")
    by_dag = _copy(workspace_template, tmp_path / "dag")
    dag = _dagbag(by_dag, single_task, monkeypatch).dags["data_pipeline_dag"]
    # then the retrain policy, and this DAG again while batches wait in the queue
    if single_task:  # the batches and their decisions in one task, then what follows
        path = {BATCH_FLOW.name, "retrain_wanted"}
    else:
        path = {s.name for s in BATCH_FLOW.steps}
    assert set(dag.task_ids) == {*path, "trigger_retrain_policy", "batches_waiting", "drain_queue"}

    for spec in BATCHES:
        _deliver(by_cli, tmp_path / "deliveries", spec)
        _deliver(by_dag, tmp_path / "deliveries", spec)
        process_next_batch(by_cli)
        run = dag.test()
        assert str(run.state) == "success"
        take_queued("retrain_policy_dag")

    assert _outputs(by_dag) == _outputs(by_cli)
    assert _lineage_trees(by_dag) == _lineage_trees(by_cli)
    assert len(_lineage_trees(by_cli)) == 1 + len(BATCHES)


def test_single_task_mode_makes_one_task_per_path(
    airflow_db: None, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = _dagbag(workspace, True, monkeypatch)
    assert set(bag.dags["train_pipeline_dag"].task_ids) == {TRAINING_FLOW.name}
    (only,) = [bag.dags["data_pipeline_dag"].get_task(BATCH_FLOW.name)]
    assert only.pool == "mainstem_workspace"
    assert only.downstream_task_ids == {"retrain_wanted", "batches_waiting"}


def test_the_batch_path_is_one_task_unless_asked_otherwise(
    airflow_db: None, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SINGLE_TASK_ENV, raising=False)
    monkeypatch.setenv("MAINSTEM_WORKSPACE", str(workspace))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert BATCH_FLOW.name in bag.dags["data_pipeline_dag"].task_ids
    assert set(bag.dags["train_pipeline_dag"].task_ids) == {s.name for s in TRAINING_FLOW.steps}
