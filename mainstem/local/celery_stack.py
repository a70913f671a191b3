"""The CeleryExecutor pieces of `make stack EXECUTOR=celery`: a Redis broker and Celery workers.

In: the stack's state folder, a port for Redis, how many workers and how many tasks each runs at
once, and the Airflow that `stack_up` configures (PostgreSQL metadata). Out: `redis-server` on
127.0.0.1; Airflow's components switched to `CeleryExecutor` (broker Redis, Celery results in
the metadata database, a triggerer beside the scheduler); and `airflow celery worker` processes,
each in its own folder `<state>/workers/<name>/` holding its own Airflow home (configuration,
task logs) and its own copy of the DAG folder, and running its tasks there. A worker is told the
rest by its environment only: the broker, the databases, the Execution API's URL, the
workspace's path (`MAINSTEM_WORKSPACE`) and its name (`MAINSTEM_WORKER_NAME`). Nothing of the
workers listens on a port: their log servers are off (they would bind every interface), so a
task's log stays in its worker's folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.errors import ServiceError
from mainstem.local.redis_server import RedisServer
from mainstem.local.services import ProcessRecord, end_child
from mainstem.names import WORKER_NAME_ENV

if TYPE_CHECKING:
    from mainstem.local.airflow_launcher import AirflowStack

WORKERS = 2
WORKER_CONCURRENCY = 2  # two workers of two: Airflow's parallelism of 4 in the stack


def celery_settings(broker_url: str, database_url: str, concurrency: int) -> dict[str, str]:
    """The Airflow settings a Celery stack adds, for its components and workers alike."""
    return {
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        # Task states go to the metadata database, not to Redis (Airflow warns against that).
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        # Sending a task to the broker times out after 1 s by default, and the task fails: too
        # short for a laptop busy starting a dozen Python processes.
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
    }


def worker_settings(root: Path, name: str) -> dict[str, str]:
    """What a worker in `root` does not share with the scheduler or another worker."""
    home = root / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        WORKER_NAME_ENV: name,
    }


@dataclass
class CeleryWorker:
    """`airflow celery worker` named `name`, living in `root`."""

    name: str
    root: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    record: ProcessRecord | None = None

    @property
    def log_file(self) -> Path:
        return self.root / "worker.log"

    def node_name(self) -> str:
        """The Celery node name: `name@host`, unique among workers on one machine."""
        import socket

        return f"{self.name}@{socket.gethostname()}"

    def start(self, base_env: dict[str, str], dags: Path, concurrency: int) -> ProcessRecord:
        """Copy the DAG folder in, and start the worker with `base_env` made its own."""
        copy = self.root / "dags"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(dags, copy, ignore=shutil.ignore_patterns("__pycache__"))
        (self.root / "airflow").mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "airflow"),
            "celery", "worker",
            "--celery-hostname", self.node_name(),
            "--concurrency", str(concurrency),
            "--skip-serve-logs",
            "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env={**base_env, **worker_settings(self.root, self.name)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.record = ProcessRecord.of(f"celery {self.name}", self.process.pid)
        return self.record

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        """Warm shutdown (SIGTERM lets running tasks finish), SIGKILL after the grace period."""
        if self.process is not None:
            end_child(self.process, self.record)
        elif self.record is not None:
            self.record.stop()
        self.process = self.record = None


def responding_workers(broker_url: str, timeout: float = 1.0) -> set[str]:
    """The Celery node names that answer a ping through the broker."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=timeout) or []
    finally:
        app.close()
    return {name for reply in replies for name in reply}


@dataclass
class CeleryServices:
    """The broker and workers around one Airflow: what `stack_up` starts for `--executor celery`."""

    state_dir: Path
    redis_port: int
    workers: int = WORKERS
    concurrency: int = WORKER_CONCURRENCY
    broker: RedisServer = field(init=False)
    celery_workers: list[CeleryWorker] = field(init=False)

    def __post_init__(self) -> None:
        self.broker = RedisServer(self.state_dir / "redis", self.redis_port)
        self.celery_workers = [
            CeleryWorker(f"worker-{n}", self.state_dir / "workers" / f"worker-{n}")
            for n in range(1, self.workers + 1)
        ]

    def before_airflow(self, airflow: AirflowStack) -> None:
        """Start the broker, and make `airflow` a CeleryExecutor on it (its database set)."""
        if airflow.database_url is None:
            raise ServiceError("the Celery stack needs Airflow's metadata on PostgreSQL")
        self.broker.start()
        airflow.executor = "CeleryExecutor"
        airflow.settings.update(
            celery_settings(self.broker.url, airflow.database_url, self.concurrency)
        )

    def after_airflow(self, airflow: AirflowStack, timeout: float = 180.0) -> None:
        """Start the workers and wait until each answers a ping through the broker."""
        dags = Path(airflow.env()["AIRFLOW__CORE__DAGS_FOLDER"])
        for worker in self.celery_workers:
            worker.start(airflow.env(), dags, self.concurrency)
        expected = {worker.node_name() for worker in self.celery_workers}
        deadline = time.monotonic() + timeout
        while not expected <= responding_workers(self.broker.url):
            dead = [worker.name for worker in self.celery_workers if worker.exited()]
            if dead or time.monotonic() > deadline:
                reason = f"{dead[0]} exited" if dead else f"not ready within {timeout:.0f} s"
                raise ServiceError(
                    f"celery worker {reason}; see {self.state_dir / 'workers'}/*/worker.log"
                )
            time.sleep(1.0)

    def stop(self) -> None:
        """Workers first (they finish their tasks), then the broker."""
        for worker in self.celery_workers:
            worker.stop()
        self.broker.stop()

    def service_records(self) -> list[ProcessRecord]:
        """What must stop after Airflow: the broker."""
        return [self.broker.record] if self.broker.record else []

    def worker_records(self) -> list[ProcessRecord]:
        """What must stop before Airflow: the workers."""
        return [w.record for w in self.celery_workers if w.record is not None]

    def describe(self) -> dict[str, Any]:
        """For `stack.json`: the broker's URL and each worker's folder and node name."""
        return {
            "broker": self.broker.url,
            "workers": [
                {"name": w.name, "node": w.node_name(), "dir": str(w.root)}
                for w in self.celery_workers
            ],
            "concurrency": self.concurrency,
        }
