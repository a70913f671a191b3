"""`make stack`: the production-shaped services on one machine, for a pipeline workspace.

In: a state folder (default `.stack/`, git-ignored), the workspace Airflow runs (default the
demo's, `.demo/workspace`, created empty if missing) and three loopback ports. Out: a PostgreSQL
15 cluster holding two databases, `mlflow` (the MLflow server's tracking store and registry) and
`airflow` (Airflow's metadata, so LocalExecutor runs tasks in parallel); `mlflow server`; and
Airflow's api-server, scheduler and dag-processor, whose tasks log to that MLflow server. Every
process is recorded in `<state>/stack.json` with its pid and start time, so `stack_down` (`make
stack-down`) stops exactly those, from any later process. Nothing listens beyond 127.0.0.1.
With `executor="celery"` (`make stack EXECUTOR=celery`), Airflow runs CeleryExecutor and the
stack adds a Redis broker, a triggerer and two Celery workers (mainstem.local.celery_stack).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mainstem.commands import environment
from mainstem.durable import read_json, write_json
from mainstem.errors import MainstemError, ServiceError
from mainstem.flow.workspace import create_workspace, source_root
from mainstem.local.celery_stack import CeleryServices
from mainstem.local.services import MlflowServer, PostgresCluster, ProcessRecord

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class StackPorts:
    postgres: int = 55432
    mlflow: int = 5000
    airflow: int = 8080
    redis: int = 6379  # the Celery broker, with `executor="celery"` only


def default_state_dir() -> Path:
    return source_root() / ".stack"


def default_workspace() -> Path:
    return source_root() / ".demo" / "workspace"


def memory_pss(records: list[ProcessRecord]) -> int:
    """Proportional set size, in bytes, of the recorded processes and all their children."""
    total = 0
    for record in records:
        if not record.alive():
            continue
        try:
            root = psutil.Process(record.pid)
            for process in [root, *root.children(recursive=True)]:
                total += int(process.memory_full_info().pss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _records(state: dict[str, Any]) -> list[ProcessRecord]:
    return [ProcessRecord(**record) for record in state.get("processes", [])]


def stack_up(
    state_dir: Path,
    workspace: Path,
    ports: StackPorts,
    executor: str = "local",
    dags_folder: Path | None = None,
) -> dict[str, Any]:
    """Start every service, wait until each answers, record them; what `stack.json` holds.

    `executor` is "local" or "celery"; `dags_folder` (default: the workspace's `dags/`) is the
    DAG folder Airflow loads.
    """
    from mainstem.local.airflow_launcher import AirflowStack

    state_dir = state_dir.resolve()
    state_file = state_dir / STATE_FILE
    if state_file.exists():
        running = [r.name for r in _records(read_json(state_file)) if r.alive()]
        if running:
            raise MainstemError(
                f"a stack is already running from {state_dir} ({', '.join(running)}); "
                "stop it with `make stack-down` first"
            )
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    workspace = workspace.resolve()
    if not (workspace / "dvc.yaml").exists():
        create_workspace(workspace)
    postgres = PostgresCluster(state_dir / "postgres", ports.postgres)
    artifacts, mlflow_log = state_dir / "mlflow-artifacts", state_dir / "mlflow.log"
    mlflow = MlflowServer("", artifacts, ports.mlflow, mlflow_log)
    airflow = AirflowStack(
        workspace,
        state_dir / "airflow",
        ports.airflow,
        owns_processes=False,
        started_by="make stack",
        dags_folder=dags_folder,
    )
    celery = CeleryServices(state_dir, ports.redis) if executor == "celery" else None
    try:
        postgres.init()
        postgres.start()
        mlflow.backend_store_uri = postgres.create_database("mlflow")
        airflow.database_url = postgres.create_database("airflow")
        if celery:
            celery.before_airflow(airflow)
        mlflow.start()
        # Airflow's components pass their environment on to the tasks they run; this
        # process's own environment is put back once they have started.
        with environment({"MLFLOW_TRACKING_URI": mlflow.url}):
            airflow.start()
            if celery:
                celery.after_airflow(airflow)
    except BaseException:
        if celery:
            celery.stop()
        airflow.stop()
        mlflow.stop()
        postgres.stop()
        raise
    records = [
        record
        for record in (
            postgres.server_record(),
            *(celery.service_records() if celery else []),
            mlflow.record,
            *(ProcessRecord.of(f"airflow {name}", p.pid) for name, p in airflow.processes.items()),
            *(celery.worker_records() if celery else []),
        )
        if record is not None
    ]
    state = {
        "workspace": str(workspace),
        "executor": executor,
        "postgres": {"root": str(postgres.root), "port": ports.postgres},
        "urls": {
            "postgres": postgres.url("postgres"),
            "mlflow": mlflow.url,
            "airflow": airflow.url,
            "airflow_database": airflow.database_url,
        },
        "airflow_home": str(airflow.home),
        "airflow_password_file": str(airflow.home / "simple_auth_manager_passwords.json.generated"),
        "processes": [record.to_json() for record in records],
        "ready_seconds": round(time.monotonic() - started, 1),
        "memory_pss_bytes": memory_pss(records),
    }
    if celery:
        state["celery"] = celery.describe()
    write_json(state_file, state)
    return state


def stop_waves(records: list[ProcessRecord]) -> list[list[ProcessRecord]]:
    """The order to stop a stack's processes in, each wave all at once: Celery workers (they
    finish their tasks), then Airflow's components, then the services they use (MLflow, the
    broker). PostgreSQL is left out: it is stopped last, by its own pg_ctl."""
    workers = [r for r in records if r.name.startswith("celery ")]
    airflow = [r for r in records if r.name.startswith("airflow ")]
    rest = [r for r in records if r.name != "postgres" and r not in workers + airflow]
    return [wave for wave in (workers, airflow, rest) if wave]


def stack_down(state_dir: Path) -> list[str]:
    """Stop what `stack_up` recorded in `state_dir`; the names of the processes stopped."""
    state_file = state_dir.resolve() / STATE_FILE
    try:
        state = read_json(state_file)
    except FileNotFoundError:
        raise MainstemError(f"no stack recorded in {state_dir}; nothing to stop") from None
    stopped = []
    # Airflow first (its tasks may write to MLflow and PostgreSQL), PostgreSQL last.
    for wave in stop_waves(_records(state)):
        alive = [record for record in wave if record.alive()]
        with ThreadPoolExecutor(max_workers=max(1, len(alive))) as pool:
            list(pool.map(ProcessRecord.stop, alive))
        stopped += [record.name for record in alive]
    postgres = PostgresCluster(Path(state["postgres"]["root"]), int(state["postgres"]["port"]))
    try:
        if postgres.running():
            postgres.stop()
            stopped.append("postgres")
    except ServiceError:
        # The cluster's own stop failed: fall back to signalling the recorded postmaster.
        for record in _records(state):
            if record.name == "postgres" and record.alive():
                record.stop()
                stopped.append("postgres")
    state_file.unlink()
    return stopped


def describe_stack(state: dict[str, Any]) -> list[str]:
    """How to reach each service and log in, for a person."""
    urls = state["urls"]
    return [
        f"stack ready in {state['ready_seconds']} s, "
        f"{state['memory_pss_bytes'] / 2**30:.2f} GB PSS, for workspace {state['workspace']}",
        f"  Airflow:    {urls['airflow']}  (user admin; password in "
        f"{state['airflow_password_file']})",
        f"  MLflow:     {urls['mlflow']}  (tracking store and registry on PostgreSQL)",
        f"  PostgreSQL: {urls['postgres']}  (loopback only, trust authentication)",
        *_describe_celery(state),
        "  to use them from a shell:",
        f"    export MLFLOW_TRACKING_URI={urls['mlflow']}",
        f"    export AIRFLOW_HOME={state['airflow_home']}",
        f"    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={urls['airflow_database']}",
        "  stop everything with `make stack-down`",
    ]


def _describe_celery(state: dict[str, Any]) -> list[str]:
    if "celery" not in state:
        return []
    celery = state["celery"]
    return [
        f"  Redis:      {celery['broker']}  (Celery broker; CeleryExecutor, triggerer on)",
        *(
            f"  {worker['name']}:   Celery node {worker['node']}, {celery['concurrency']} tasks at "
            f"a time, in {worker['dir']} (listens on no port)"
            for worker in celery["workers"]
        ),
    ]
