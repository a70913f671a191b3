"""A local Airflow for one workspace: api-server, scheduler, dag-processor and triggerer.

The triggerer runs the asset watcher that starts `data_pipeline_dag` when a batch's `_READY`
appears (`mainstem.flow.ready_trigger`); its log server is off, as the scheduler's is, so nothing
listens beyond the api-server on 127.0.0.1.

In: a pipeline workspace, a home folder for Airflow's state, a port, optionally a database URL.
Out: running processes with the workspace's `dags/` loaded and unpaused, the `mainstem_workspace`
pool created, `RETRAIN_THRESHOLD_ROWS` shown (with a description) in the UI's Variables, the
workspace's `.airflow.json` saying which Airflow serves it (so `mainstem status` and `retrain
explain` find its Variables by themselves), and helpers to trigger DAG runs and wait for them
through the REST API. `stop()` terminates every process it started. Used by `make airflow`, the
demo and the end-to-end tests.

A stack that owns its processes records them, with its own pid, in `<home>/processes.json`: when
the launcher is killed before it can stop them, the next start in that home (or `stop_orphans`)
finds the components still running and stops them, instead of running two schedulers at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mainstem.commands import tool_env
from mainstem.durable import read_json, write_json
from mainstem.errors import MainstemError
from mainstem.flow.sequences import BATCH_FLOW
from mainstem.local import airflow_sqlite
from mainstem.local.airflow_api import AirflowApi, AirflowRecord, write_record
from mainstem.local.services import ProcessRecord, port_is_free
from mainstem.names import (
    DATA_DAG,
    POLICY_DAG,
    THRESHOLD_VARIABLE,
    TRAIN_DAG,
    WORKSPACE_ENV,
    WORKSPACE_POOL,
)
from mainstem.openlineage.airflow_provider import provider_env
from mainstem.params import load_params

log = logging.getLogger(__name__)
FINISHED = frozenset({"success", "failed"})
RECORD_FILE = "processes.json"


def stop_orphans(home: Path) -> list[str]:
    """Stop the components an Airflow launcher in `home` started and did not live to stop.

    Returns the names stopped. Raises when the launcher itself still runs: that Airflow is in use.
    """
    try:
        recorded = read_json(home / RECORD_FILE)
    except FileNotFoundError:
        return []
    launcher = ProcessRecord(**recorded["launcher"])
    components = [ProcessRecord(**record) for record in recorded["processes"]]
    alive = [record for record in components if record.alive()]
    if alive and launcher.alive() and launcher.pid != os.getpid():
        raise MainstemError(
            f"an Airflow for {home} is running under process {launcher.pid} "
            f"({', '.join(record.name for record in alive)}); stop it (Ctrl-C where it runs, "
            "or `make stack-down` for `make stack`) and try again"
        )
    for record in alive:
        record.stop()
    (home / RECORD_FILE).unlink()
    return [record.name for record in alive]


@dataclass
class AirflowStack:
    workspace: Path
    home: Path
    port: int = 8080
    database_url: str | None = None
    owns_processes: bool = True  # False when a caller records and stops them (`make stack`)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_by: str = "make airflow"  # named in the workspace's Airflow record
    executor: str = "LocalExecutor"
    dags_folder: Path | None = None  # None: the workspace's dags/
    settings: dict[str, str] = field(default_factory=dict)  # more, for every component
    _client: AirflowApi | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder or self.workspace / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            # new DAG files are seen within 5 s, but a known file is parsed again once a
            # minute, not every 5 s: each parse is a forked process taking CPU from the batches
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            # a finished task's next task (or a new run's first) is queued sooner
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            WORKSPACE_ENV: str(self.workspace),
            **provider_env(self.workspace),
        }
        if self.database_url:
            settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database_url
        database = self.settings.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", self.database_url)
        return tool_env({**settings, **airflow_sqlite.settings(database), **self.settings})

    def _airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            tail = "\n".join((completed.stderr or completed.stdout).splitlines()[-10:])
            raise MainstemError(f"`airflow {' '.join(args)}` failed:\n{tail}")
        return completed

    def start(self, timeout: float = 180.0) -> None:
        """Migrate the metadata DB, create the pool, start the four components, wait for them."""
        if self.owns_processes:
            left = stop_orphans(self.home)
            if left:
                log.warning("stopped what an earlier Airflow here left: %s", ", ".join(left))
        if not port_is_free(self.port):
            raise MainstemError(
                f"port {self.port} on 127.0.0.1 is taken (by `make stack`, another `make airflow`"
                " or something else); stop that, or choose another port (`--port`)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self._airflow("db", "migrate")
        self._airflow("pools", "set", WORKSPACE_POOL, "1", "DVC and git steps of the workspace")
        logs = self.home / "process-logs"
        logs.mkdir(exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        commands = {
            "api-server": [airflow, "api-server", "-H", "127.0.0.1", "-p", str(self.port)],
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        }
        for name, command in commands.items():
            output = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
            self.processes[name] = subprocess.Popen(
                command,
                env=self.env(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.owns_processes:
            self._record()
        try:
            self._wait_ready(timeout)
            self._announce()
        except BaseException:
            self.stop()
            raise

    def _record(self) -> None:
        write_json(
            self.home / RECORD_FILE,
            {
                "launcher": ProcessRecord.of("launcher", os.getpid()).to_json(),
                "processes": [
                    ProcessRecord.of(name, proc.pid).to_json()
                    for name, proc in self.processes.items()
                ],
            },
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in self.processes.items() if proc.poll() is not None]
            if dead:
                raise MainstemError(
                    f"airflow {dead[0]} exited early; see {self.home / 'process-logs'}"
                )
            try:
                health = self.api("GET", "/api/v2/monitor/health")
                dags = self.api("GET", "/api/v2/dags")
                if health["scheduler"]["status"] == "healthy" and dags["total_entries"] >= 1:
                    return
            except (OSError, KeyError, MainstemError):
                pass
            time.sleep(1.0)
        raise MainstemError(f"airflow did not become ready within {timeout:.0f} s")

    def stop(self, grace: float = 20.0) -> None:
        """Terminate every component (and its children), then make sure they are gone."""
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.processes and self.owns_processes:
            (self.home / RECORD_FILE).unlink(missing_ok=True)
        self.processes.clear()

    def client(self) -> AirflowApi:
        if self._client is None:
            self._client = AirflowApi(self.url, self.password_file())
        return self._client

    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def password(self) -> str:
        return str(json.loads(self.password_file().read_text())["admin"])

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client().call(method, path, body)

    def _announce(self) -> None:
        """Record this Airflow in the workspace, and show the threshold Variable in the UI.

        `RETRAIN_THRESHOLD_ROWS` is created from params.yaml, with a description, only when it is
        not set yet: a value an operator chose survives a restart.
        """
        write_record(
            self.workspace,
            AirflowRecord(self.url, str(self.home), str(self.password_file()), self.started_by),
        )
        if self.client().variable(THRESHOLD_VARIABLE) is not None:
            return
        default = load_params(self.workspace).retrain_threshold_rows
        description = (
            "New master rows since the production model's training that make retrain_policy_dag "
            f"train again. Set from params.yaml retrain.threshold_rows ({default}) when Airflow "
            "started; change it here, or delete it to follow params.yaml."
        )
        body = {"key": THRESHOLD_VARIABLE, "value": str(default), "description": description}
        # Right after start, the scheduler and dag-processor write the same SQLite file, and the
        # api-server answers a locked database with HTTP 500: try again for a few seconds.
        for attempt in range(6):
            try:
                self.api("POST", "/api/v2/variables", body)
                return
            except MainstemError:
                if self.client().variable(THRESHOLD_VARIABLE) is not None:
                    return  # the write went through after all
                if attempt == 5:
                    raise
                time.sleep(1.0 + attempt)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])

    def wait_for_run(self, dag_id: str, run_id: str | None = None, timeout: float = 300.0) -> Any:
        """The finished run `run_id` of `dag_id` (or its first run when None)."""
        deadline = time.monotonic() + max(timeout, 1.0)
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if (run_id is None or run["dag_run_id"] == run_id) and run["state"] in FINISHED:
                    return run
            time.sleep(1.0)
        raise MainstemError(f"{dag_id} run {run_id or '(any)'} did not finish in {timeout:.0f} s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return {t["task_id"]: t["state"] for t in self.api("GET", path)["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's return value (or XCom `key`), or None when there is none (or it did not run)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/xcomEntries/{key}"
        )
        try:
            return self.api("GET", path)["value"]
        except MainstemError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def batches_of(self, run_id: str) -> list[dict[str, Any]]:
        """The batches a data_pipeline_dag run took, each as its claim (and what followed) says.

        One task (`process_batch`) returns them all, or keeps those it took under `batches`
        when a rejection failed it; with a task per step, the `claim` task returns the one.
        """
        for task_id, key in ((BATCH_FLOW.name, "return_value"), (BATCH_FLOW.name, "batches")):
            taken = self.xcom(DATA_DAG, run_id, task_id, key)
            if isinstance(taken, dict):
                return list(taken["batches"])
        claim = self.xcom(DATA_DAG, run_id, "claim")
        return [claim] if isinstance(claim, dict) else []

    def set_variable(self, key: str, value: str) -> None:
        try:
            self.api("PATCH", f"/api/v2/variables/{key}", {"key": key, "value": value})
        except MainstemError:
            self.api("POST", "/api/v2/variables", {"key": key, "value": value})

    def follow_batch(self, name: str, timeout: float = 600.0) -> BatchRuns:
        """Trigger data_pipeline_dag and follow the runs that handle the batch named `name`.

        A scheduled run may claim the batch before the triggered one; whichever run took this
        name is the batch's run. Its policy run (when its decision said retrain) and training
        run are found by the run ids the DAGs give the runs they trigger (`after__<run id>`).
        """
        deadline = time.monotonic() + timeout
        triggered = self.trigger(DATA_DAG)
        self.wait_for_run(DATA_DAG, triggered, timeout)
        # A delivery refused at the drop folder leaves no claim: the triggered run is its run.
        data_run = self._run_that_claimed(name) or self.wait_for_run(DATA_DAG, triggered)
        taken = [b for b in self.batches_of(data_run["dag_run_id"]) if b.get("name") == name]
        runs = BatchRuns(data_run, taken[-1] if taken else None)
        if data_run["state"] != "success":
            return runs
        # one task made the decision in the data run; the policy runs only to train (or retry)
        result = self.xcom(DATA_DAG, data_run["dag_run_id"], BATCH_FLOW.name)
        if isinstance(result, dict) and not result["policy_needed"]:
            return replace(runs, decision=result["decision"])
        policy_id = f"after__{data_run['dag_run_id']}"
        policy_run = self.wait_for_run(POLICY_DAG, policy_id, deadline - time.monotonic())
        decision = self.xcom(POLICY_DAG, policy_id, "decide")
        runs = replace(runs, policy_run=policy_run, decision=decision)
        if not (decision and decision.get("retrain")):
            return runs
        train_id = f"after__{policy_id}"
        train_run = self.wait_for_run(TRAIN_DAG, train_id, deadline - time.monotonic())
        return replace(runs, train_run=train_run, trained=self.xcom(TRAIN_DAG, train_id, "train"))

    def _run_that_claimed(self, name: str) -> dict[str, Any] | None:
        for run in sorted(self.runs(DATA_DAG), key=lambda r: r["run_after"], reverse=True):
            if any(b.get("name") == name for b in self.batches_of(run["dag_run_id"])):
                return self.wait_for_run(DATA_DAG, run["dag_run_id"])
        return None


@dataclass(frozen=True)
class BatchRuns:
    """The DAG runs that handled one batch, and what their key tasks returned."""

    data_run: dict[str, Any]
    claim: dict[str, Any] | None
    policy_run: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    train_run: dict[str, Any] | None = None
    trained: dict[str, Any] | None = None


def serve(workspace: Path, home: Path, port: int) -> None:
    """Run Airflow for `workspace` until Ctrl-C (or SIGTERM), then stop every component."""
    stack = AirflowStack(workspace, home, port=port)
    print(f"starting Airflow for {workspace} (state in {home}) ...", flush=True)
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        stack.start()  # which stops what it started if it fails
    except KeyboardInterrupt:
        print("Airflow stopped before it was ready.", flush=True)
        return
    try:
        print(
            f"Airflow UI: {stack.url}  (log in as admin / {stack.password()})\n"
            "DAGs are unpaused; drop a batch with `mainstem submit --workspace "
            f"{workspace} PATH...`. Ctrl-C stops Airflow.",
            flush=True,
        )
        while not stopping and all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping Airflow ...", flush=True)
        stack.stop()
        print("Airflow stopped.", flush=True)


def main() -> None:
    """`make airflow`: errors as one line saying what to fix, not a traceback."""
    import argparse

    from mainstem.console import run_entry
    from mainstem.flow.workspace import create_workspace, source_root

    parser = argparse.ArgumentParser(description="Run a local Airflow for a pipeline workspace.")
    parser.add_argument("--workspace", default=str(source_root() / ".demo" / "workspace"))
    parser.add_argument("--home", help="Airflow state folder (default: <workspace>/../airflow)")
    parser.add_argument("--port", type=int, default=8080)
    options = parser.parse_args()

    def run() -> None:
        root = Path(options.workspace).resolve()
        if not (root / "dvc.yaml").exists():
            print(f"no workspace at {root}; creating one", flush=True)
            create_workspace(root)
        serve(root, Path(options.home or root.parent / "airflow").resolve(), options.port)

    run_entry(run, "make airflow")


if __name__ == "__main__":
    main()
