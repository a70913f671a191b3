"""`make stack EXECUTOR=celery` for real: PostgreSQL, Redis, the MLflow server, Airflow on
CeleryExecutor and two Celery workers on 127.0.0.1; a DAG of four parallel tasks runs through the
real scheduler, every task on a Celery worker, both workers used; `stack down` leaves nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from mainstem.local.airflow_api import AirflowApi
from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.services import PG_BIN, free_port
from mainstem.local.stack import StackPorts, describe_stack, stack_down, stack_up

pytestmark = pytest.mark.e2e

PROBE_DAGS = Path(__file__).parent / "celery_dags"
PROBE_DAG = "celery_probe_dag"


def _tree(pids: list[int]) -> list[psutil.Process]:
    """The processes `pids` name, with all their descendants."""
    found = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            found += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def _running(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture
def celery_stack(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}); apt-get install postgresql-15")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///this-process-only.db")
    # Not under pytest's tmp_path: its parents are private to root, and PostgreSQL runs as postgres.
    state_dir = Path(tempfile.mkdtemp(prefix="mainstem-celery-"))
    state_dir.chmod(0o755)
    ports = StackPorts(free_port(), free_port(), free_port(), free_port())
    state = stack_up(state_dir, workspace, ports, executor="celery", dags_folder=PROBE_DAGS)
    # the stack's processes get its MLflow server; this process keeps its own store
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///this-process-only.db"
    started = _tree([record["pid"] for record in state["processes"]])
    try:
        yield state
    finally:
        started += _tree([record["pid"] for record in state["processes"]])  # and their children now
        stopped = stack_down(state_dir)
        left = _running(started)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert {"redis", "postgres", "celery worker-1", "celery worker-2"} <= set(stopped)
    assert left == [], "stack down left processes running"


def _log_tails(state: dict[str, Any]) -> str:
    """The ends of the scheduler's and the workers' logs, to say why a task failed."""
    logs = [Path(state["airflow_home"]) / "process-logs" / "scheduler.log"]
    logs += [Path(worker["dir"]) / "worker.log" for worker in state["celery"]["workers"]]
    return "\n".join(
        f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        for log in logs
        if log.exists()
    )


def _pid_of(state: dict[str, Any], name: str) -> int:
    [pid] = [record["pid"] for record in state["processes"] if record["name"] == name]
    return int(pid)


def test_tasks_run_on_both_celery_workers_and_never_on_the_scheduler(
    celery_stack: dict[str, Any], workspace: Path
) -> None:
    state = celery_stack
    workers = {worker["name"]: Path(worker["dir"]) for worker in state["celery"]["workers"]}
    worker_pids = {name: _pid_of(state, f"celery {name}") for name in workers}
    scheduler = _pid_of(state, "airflow scheduler")
    assert any("Redis:" in line for line in describe_stack(state))

    airflow = AirflowStack(
        workspace,
        Path(state["airflow_home"]),
        port=int(state["urls"]["airflow"].rsplit(":", 1)[1]),
        owns_processes=False,
    )
    # A machine shared by many test runs can keep the api-server from answering within 30 s.
    airflow._client = AirflowApi(airflow.url, airflow.password_file(), timeout=120)
    run_id = airflow.trigger(PROBE_DAG)
    run = airflow.wait_for_run(PROBE_DAG, run_id, timeout=150)
    states = airflow.task_states(PROBE_DAG, run_id)
    assert run["state"] == "success", (states, _log_tails(state))
    reports = {task: airflow.xcom(PROBE_DAG, run_id, task) for task in sorted(states)}
    assert len(reports) == 4

    for task, report in reports.items():
        name = report["worker"]
        assert name in workers, (task, report)
        # The task is a descendant of that worker's process, and of no other component.
        assert worker_pids[name] in report["ancestors"], (task, report)
        assert scheduler not in report["ancestors"], (task, report)
        assert not set(report["ancestors"]) & {pid for n, pid in worker_pids.items() if n != name}
        # It ran in that worker's own folder, under that worker's own Airflow home.
        assert Path(report["cwd"]).is_relative_to(workers[name]), (task, report)
        assert Path(report["airflow_home"]) == workers[name] / "airflow"
    assert {report["worker"] for report in reports.values()} == set(workers)
