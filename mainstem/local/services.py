"""Throwaway PostgreSQL clusters and MLflow servers on 127.0.0.1, for tests and `make stack`.

In: a folder for the service's state, a port, and (for MLflow) a backend store URI. Out: running
processes, their URLs, and `stop()` that ends them. A PostgreSQL cluster is created with Debian's
PostgreSQL 15 binaries (`initdb` refuses root, so as root it runs as the `postgres` user), trusts
loopback connections only, and listens on 127.0.0.1 and a socket in its own folder. The MLflow
server runs one worker with background jobs off (about 0.4 GB instead of 2.6 GB), artifacts in a
local folder. Every process leads its own session, so stopping it ends its children too, and it
is described by a ProcessRecord (pid and start time) that another process can stop later without
ever signalling a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from mainstem.commands import tool_env
from mainstem.errors import ServiceError
from mainstem.intake import process_start

PG_BIN = Path(os.environ.get("MAINSTEM_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port` (connections of a stopped server may linger)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class ProcessRecord:
    """A started process as a later `stop` finds it: its pid and when that pid started."""

    name: str
    pid: int
    started: float

    @classmethod
    def of(cls, name: str, pid: int) -> ProcessRecord:
        start = process_start.started(pid, zombie=True)
        if start == 0.0:
            raise psutil.NoSuchProcess(pid, name)
        return cls(name, pid, start)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def alive(self) -> bool:
        """Whether the very process recorded is still running (not a recycled pid, not a zombie)."""
        return process_start.is_same_process(self.pid, self.started)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group it leads, SIGKILL after `grace` seconds; reap a child."""
        if not self.alive():
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            _reap(self.pid)
            time.sleep(0.1)
        if self.alive():
            _signal_group(self.pid, signal.SIGKILL)
            while self.alive():
                _reap(self.pid)
                time.sleep(0.05)
        _reap(self.pid)


def end_child(
    process: subprocess.Popen[bytes], record: ProcessRecord | None, wait: float = 5.0
) -> None:
    """Stop a child this process started (by its record), then reap it.

    The record stops the process group and waits for it; should the child still run after that
    (its record no longer matches it), its group is killed rather than waited on for ever.
    """
    if record is not None:
        record.stop()
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect a child of this process that has exited, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _as_postgres(args: list[str]) -> list[str]:
    """`args` run as the postgres user when this process is root (initdb refuses root)."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", PG_USER, "--", *args]


@dataclass
class PostgresCluster:
    """A PostgreSQL 15 cluster of its own in `root` (data and socket), on 127.0.0.1:`port`."""

    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL that names psycopg2 (SQLAlchemy 2.1 takes a bare one as psycopg 3)."""
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            _as_postgres([str(PG_BIN / args[0]), *args[1:]]),
            capture_output=True,
            text=True,
            check=False,
            env=tool_env({"LC_ALL": "C.UTF-8"}),
        )
        if completed.returncode != 0:
            tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-8:])
            raise ServiceError(f"PostgreSQL `{args[0]}` failed in {self.root}:\n{tail}")
        return completed

    def init(self) -> None:
        """Create the cluster unless it exists: UTF-8, trust on loopback, nothing else."""
        if not (PG_BIN / "initdb").exists():
            raise ServiceError(
                f"PostgreSQL 15 is not installed ({PG_BIN / 'initdb'} is missing); "
                "apt-get install postgresql-15"
            )
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "--username",
            PG_USER,
            "--encoding=UTF8",
            "--no-instructions",
        )

    def start(self) -> None:
        """Start the server (waiting until it accepts connections); a no-op when it runs."""
        if self.running():
            return
        if not port_is_free(self.port):
            raise ServiceError(f"port {self.port} on 127.0.0.1 is taken; choose another")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w",
            "start",
        )  # fmt: skip

    def running(self) -> bool:
        status = subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "status"]),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def stop(self) -> None:
        """Stop the server, rolling back open transactions (`-m fast`); a no-op when stopped."""
        if self.data_dir.exists() and self.running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; its URL."""
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres"
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def server_record(self) -> ProcessRecord | None:
        """The postmaster, from its pid file; None when it is not running."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            return ProcessRecord.of("postgres", pid)
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
            return None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class MlflowServer:
    """`mlflow server` on 127.0.0.1:`port` over `backend_store_uri`, artifacts in `artifacts`."""

    backend_store_uri: str
    artifacts: Path
    port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    record: ProcessRecord | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def start(self, timeout: float = 120.0) -> ProcessRecord:
        """Start the server and wait until `/health` answers; the record to stop it by."""
        if not port_is_free(self.port):
            raise ServiceError(f"port {self.port} on 127.0.0.1 is taken; choose another")
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = tool_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.artifacts.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        record = self.record = ProcessRecord.of("mlflow", self.process.pid)
        deadline = time.monotonic() + timeout
        while not _healthy(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise ServiceError(f"mlflow server did not become healthy:\n{tail}")
            time.sleep(0.5)
        return record

    def stop(self) -> None:
        """End the server and its workers."""
        if self.process is not None:
            end_child(self.process, self.record)
        elif self.record is not None:
            self.record.stop()
        self.process = self.record = None
