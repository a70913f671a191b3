"""One batch through data_pipeline_dag → retrain_policy_dag → train_pipeline_dag on a real
scheduler: api-server, scheduler and dag-processor as subprocesses on 127.0.0.1 (SQLite,
LocalExecutor), a real DVC remote and a real MLflow store in the workspace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from mainstem.commands import git
from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.samples import BatchSpec
from mainstem.local.services import free_port
from mainstem.openlineage.settings import load_settings
from mainstem.params import load_params
from mainstem.training.registry import connect, resolve_production, tracking_uri
from tests.conftest import Deliver
from tests.openlineage_events import badly_ended, read_run_files, schema_errors


@pytest.fixture
def stack(workspace: Path, tmp_path: Path) -> Iterator[AirflowStack]:
    stack = AirflowStack(workspace, tmp_path / "airflow", port=free_port())
    stack.start()
    pids = [proc.pid for proc in stack.processes.values()]
    try:
        yield stack
    finally:
        stack.stop()
    assert not [pid for pid in pids if psutil.pid_exists(pid)], "an Airflow process survived stop()"


def _task_runs(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The Airflow provider's run ids per job (`dag_id.task_id` for a task)."""
    found: dict[str, set[str]] = {}
    for event in events:
        found.setdefault(event["job"]["name"], set()).add(event["run"]["runId"])
    return found


def _check_stage_lineage(workspace: Path, before: set[str]) -> None:
    """The stages' runs under Airflow nest under the runs of the tasks that ran `dvc repro`."""
    settings = load_settings(workspace)
    stage_events = [
        e for e in read_run_files(settings.events_dir) if e["run"]["runId"] not in before
    ]
    provider_events = read_run_files(settings.airflow_events_dir)
    assert {e["job"]["name"] for e in stage_events} == {"ingest", "validate", "merge", "train"}
    assert badly_ended(stage_events) == {}
    assert [schema_errors(e) for e in stage_events if schema_errors(e)] == []
    assert [schema_errors(e) for e in provider_events if schema_errors(e)] == []
    tasks = _task_runs(provider_events)
    parents = {}
    for event in stage_events:
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] in tasks[parent["job"]["name"]], event["job"]["name"]
        assert parent["job"]["namespace"] == settings.namespace
        # the root is the DAG run that started it all: a triggered DAG's root is its trigger's
        assert parent["root"]["run"]["runId"] in tasks[parent["root"]["job"]["name"]]
        parents[event["job"]["name"]] = parent["job"]["name"]
    # the batch path is one task by default, so the stages' parent is that task
    assert parents == {
        "ingest": "data_pipeline_dag.process_batch",
        "validate": "data_pipeline_dag.process_batch",
        "merge": "data_pipeline_dag.process_batch",
        "train": "train_pipeline_dag.train",
    }


@pytest.mark.e2e
def test_a_batch_flows_through_all_three_dags(
    stack: AirflowStack, workspace: Path, deliver: Deliver
) -> None:
    template_runs = {e["run"]["runId"] for e in read_run_files(load_settings(workspace).events_dir)}
    stack.set_variable("RETRAIN_THRESHOLD_ROWS", "20")
    stack.wait_for_run("data_pipeline_dag", timeout=180)  # the first scheduled run, on nothing
    deliver(BatchSpec(1, first_id=1, rows=40, bad_rows=2))

    runs = stack.follow_batch("batch-001", timeout=480)

    assert runs.data_run["state"] == "success"
    assert runs.policy_run is not None
    assert runs.policy_run["state"] == "success"
    assert runs.decision is not None
    assert runs.decision["basis"] == "bootstrap"
    assert runs.train_run is not None
    assert runs.train_run["state"] == "success"

    params = load_params(workspace)
    master = pd.read_parquet(params.merge.master_dir)
    metrics = json.loads(params.merge.metrics_file.read_text())
    variable = stack.api("GET", "/api/v2/variables/CURRENT_MASTER_ROWS")["value"]
    assert len(master) == metrics["master_rows"] == int(variable) == 38

    client = connect(tracking_uri(params))
    production = resolve_production(client, params.train.model_name, params.train.production_alias)
    assert production is not None
    assert runs.trained is not None
    assert production.version == runs.trained["model_version"] == "1"
    assert client.get_run(production.run_id).data.metrics["master_rows"] == 38

    subjects = git(["log", "--format=%s"], workspace).stdout.splitlines()
    assert subjects[0].startswith("train: produce-grade version 1")
    assert subjects[1].startswith(f"batch {runs.claim['batch_id']} (batch-001): accepted")
    _check_stage_lineage(workspace, template_runs)
