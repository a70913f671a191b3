"""A lineage ready for stateless workers on one machine: its drop zone and data on S3, its git
history in a bare repository. For the Celery end-to-end test and the P16 benchmark.

In: a workspace, the drop zone and DVC remote URLs (`s3://...`), the lease timeout, and an S3
endpoint (`moto_server` here). Out: the workspace's `params.yaml` switched to the zone with that
lease timeout, in a pipeline commit; its DVC data pushed to the S3 remote; a bare clone of its
history (the workers' only lineage remote); and the environment workers need to find them.
Also `MotoServer`, an S3-protocol server on 127.0.0.1 for these.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mainstem.commands import dvc, git
from mainstem.errors import ServiceError
from mainstem.flow.workspace import REMOTE_ENDPOINT_ENV, REMOTE_URL_ENV, configure_remote
from mainstem.local.services import free_port

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoServer:
    """`moto_server` on 127.0.0.1 at a free port, its log in `log_file`."""

    log_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1"]
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return self.url
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServiceError(f"moto_server did not start; see {self.log_file}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def s3_environment(endpoint: str, store: str) -> dict[str, str]:
    """What a worker (and this process) needs to reach the zone and the DVC remote."""
    return {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        REMOTE_URL_ENV: store,
        REMOTE_ENDPOINT_ENV: endpoint,
    }


def with_params(text: str, values: dict[str, object]) -> str:
    """`params.yaml` text with the `ingest:` keys in `values` set (each key is indented once)."""
    lines = [
        next((f"  {k}: {v}" for k, v in values.items() if line.startswith(f"  {k}:")), line)
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


def publish_lineage(workspace: Path, zone: str, stale_seconds: int, origin: Path) -> Path:
    """Switch `workspace` to the drop zone `zone` with leases stale after `stale_seconds`,
    commit, push its data to the DVC remote the environment names, and clone its history
    bare into `origin` (give it to workers as `MAINSTEM_GIT_REMOTE`)."""
    params = workspace / "params.yaml"
    settings: dict[str, object] = {
        "incoming_dir": zone,
        "stale_lock_seconds": stale_seconds,
        "dead_owner_grace_seconds": stale_seconds,
    }
    params.write_text(with_params(params.read_text(encoding="utf-8"), settings), encoding="utf-8")
    git(["commit", "--quiet", "-am", f"pipeline: the drop zone on {zone}"], workspace)
    configure_remote(workspace)
    dvc(["push", "--quiet"], workspace)
    git(["clone", "--quiet", "--bare", str(workspace), str(origin)], origin.parent)
    return origin
