"""Fixtures shared by every test layer: quiet tools, and throwaway pipeline workspaces.

Creating a workspace (git init, dvc init, an empty `dvc repro`) takes several seconds, so one
template is built per session and each test gets its own copy of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mainstem.commands import QUIET_ENV
from mainstem.flow.workspace import (
    REMOTE_ENDPOINT_ENV,
    REMOTE_URL_ENV,
    configure_remote,
    create_workspace,
)
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import IngestParams, load_params

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(QUIET_ENV)
    # Airflow reads its configuration when first imported: point it at a throwaway home now.
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="mainstem-airflow-")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
    bin_dir = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(bin_dir):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Kill child processes a test left running, and say which: a leak must not hang CI."""
    import psutil

    # under xdist the controller's children are the workers, and each worker runs this itself
    if not session.config.pluginmanager.has_plugin("dsession"):
        leftovers = psutil.Process().children(recursive=True)
        for child in leftovers:
            with contextlib.suppress(psutil.Error):
                # stderr: an xdist worker's stdout is not shown, its stderr is the terminal's
                print(
                    f"\nleft running by a test, now killed: pid {child.pid} {child.cmdline()}",
                    file=sys.stderr,
                )
                child.kill()
        psutil.wait_procs(leftovers, timeout=10)
    shutil.rmtree(os.environ.get("AIRFLOW_HOME", ""), ignore_errors=True)


def ingest_params(
    root: Path, *, stale: float = 3600, grace: float = 0, deadline: float = 600
) -> IngestParams:
    """A drop folder and its stores under `root`, as the claim and ingest tests use them."""
    return IngestParams(
        incoming_dir=root / "incoming",
        claimed_batch=root / "claimed_batch.json",
        raw_dir=root / "raw",
        quarantine_dir=root / "quarantine",
        stale_lock_seconds=stale,
        dead_owner_grace_seconds=grace,
        manifest_deadline_seconds=deadline,
    )


@pytest.fixture(scope="session")
def workspace_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose DVC remote is configured: its `.dvc/config.local` names that remote."""
    template = create_workspace(tmp_path_factory.mktemp("template") / "workspace", ROOT)
    configure_remote(template)
    return template


@pytest.fixture
def workspace(workspace_template: Path, tmp_path: Path) -> Path:
    """A fresh pipeline workspace with an empty master and a local DVC remote beside it."""
    dest = tmp_path / "workspace"
    shutil.copytree(workspace_template, dest, symlinks=True)
    if os.environ.get(REMOTE_URL_ENV) or os.environ.get(REMOTE_ENDPOINT_ENV):
        configure_remote(dest)  # a remote from the environment: let DVC write it
    else:
        # The template's config.local names the template's remote folder; naming the copy's
        # instead gives the bytes `configure_remote(dest)` writes, without a `dvc` process
        # (a second or more of CPU per test).
        remote = _local_remote(dest)
        remote.mkdir(parents=True, exist_ok=True)
        config = dest / ".dvc" / "config.local"
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace(str(_local_remote(workspace_template)), str(remote)), encoding="utf-8"
        )
    return dest


def _local_remote(workspace: Path) -> Path:
    """The folder of the workspace's remote as params.yaml names it (`../remote`)."""
    return (workspace / load_params(workspace).remote.url).resolve()


Deliver = Callable[[BatchSpec], Path]


@pytest.fixture
def deliver(workspace: Path, tmp_path: Path) -> Deliver:
    """Generate a sample batch and submit it into the workspace's drop folder."""

    def _deliver(spec: BatchSpec) -> Path:
        folder = make_batch(tmp_path / "deliveries" / spec.name, spec)
        submit([folder], load_params(workspace).ingest.incoming_dir, spec.name)
        return folder

    return _deliver


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow store, made once: creating its schema takes seconds. Tests copy it."""
    from tests.mlflow_store import empty_store

    return empty_store(tmp_path_factory.mktemp("mlflow-template") / "mlflow.db")


@pytest.fixture
def client(store_template: Path, tmp_path: Path) -> MlflowClient:
    """A private copy of an empty store, so each test starts from nothing in a few ms."""
    from mainstem.training.registry import connect
    from tests.mlflow_store import copy_store

    return connect(copy_store(store_template, tmp_path / "mlflow"))
