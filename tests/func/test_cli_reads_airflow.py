"""`mainstem status` and `retrain explain` as an operator runs them: a subprocess in a plain shell.

No `AIRFLOW_HOME` in the environment: they find the workspace's Airflow through the record `make
airflow` writes, say so when it cannot be reached, and the dry run writes nothing at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mainstem.local.airflow_api import AirflowRecord, write_record
from mainstem.local.services import free_port
from mainstem.params import load_params
from mainstem.training.registry import connect, ensure_experiment
from tests.conftest import ROOT
from tests.mlflow_store import empty_store, log_run, register


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout in a fresh process, with no Airflow or MLflow settings around."""
    return run_python("-m", "mainstem.cli", *args)


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """Python in a fresh process given `args`, in the CLI's plain environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "MLFLOW_TRACKING_URI"))
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,  # this checkout's `mainstem` first on the path
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    }


def test_explain_in_a_fresh_workspace_writes_nothing_and_prints_only_its_chain(
    workspace: Path,
) -> None:
    before = tree(workspace)

    explained = run_cli("retrain", "explain", "--workspace", str(workspace))

    assert explained.returncode == 0, explained.stderr
    assert tree(workspace) == before
    assert explained.stderr == ""
    lines = explained.stdout.splitlines()
    assert lines[0].startswith("retrain policy, dry run")
    assert all(line.startswith("  ") for line in lines[1:])
    assert "  production: produce-grade@production is not set yet" in lines
    assert (
        "  decision: no retrain - bootstrap: no produce-grade@production yet, and the "
        "master is empty" in lines
    )


def test_explain_reads_an_existing_store_read_only_and_without_mlflow(
    workspace: Path,
) -> None:
    params = load_params(workspace)
    client = connect(f"sqlite:///{empty_store(params.train.tracking_db)}")
    experiment_id = ensure_experiment(client, params.train.experiment)
    run_id = log_run(client, experiment_id, start=1_000, master_rows=100)
    register(client, params.train.model_name, run_id, params.train.production_alias)
    before = tree(workspace)

    explained = run_cli("retrain", "explain", "--workspace", str(workspace), "--json")

    assert explained.returncode == 0, explained.stderr
    assert tree(workspace) == before
    assert explained.stderr == ""
    decision = json.loads(explained.stdout)
    assert (decision["production_version"], decision["production_run_id"]) == ("1", run_id)
    assert (decision["compatible_run_id"], decision["trained_master_rows"]) == (run_id, 100)
    assert (decision["basis"], decision["new_rows"]) == ("shrunk", -100)
    # Importing MLflow alone costs seconds: the SQLite store is read without it.
    imported = run_python(
        "-c",
        "import sys; from mainstem.cli import main; "
        f"main(['retrain', 'explain', '--workspace', {str(workspace)!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'sqlalchemy'}))",
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines()[-1] == "[]"


def test_status_and_explain_say_when_the_recorded_airflow_cannot_be_reached(
    workspace: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    write_record(
        workspace, AirflowRecord(url, str(tmp_path), str(tmp_path / "password"), "make airflow")
    )

    status = run_cli("status", "--workspace", str(workspace))
    explained = run_cli("retrain", "explain", "--workspace", str(workspace), "--json")

    assert status.returncode == 0, status.stderr
    assert (
        f"airflow: Airflow at {url} (make airflow, recorded in .airflow.json) cannot be "
        "reached" in status.stdout
    )
    assert (
        "RETRAIN_THRESHOLD_ROWS: 400 (params.yaml retrain.threshold_rows (Airflow at "
        f"{url}" in status.stdout
    )
    assert "the value the DAGs use is unknown" in status.stdout
    assert "cannot be reached: [Errno 111] Connection refused" in status.stderr
    assert explained.returncode == 0, explained.stderr
    decision = json.loads(explained.stdout)
    assert decision["airflow"]["values"] is None
    assert decision["airflow"]["error"].startswith("cannot be reached")
    assert decision["threshold"] == 400
    assert "cannot be reached" in explained.stderr


def test_without_a_record_they_say_no_airflow_serves_the_workspace(workspace: Path) -> None:
    status = run_cli("status", "--workspace", str(workspace), "--json")

    shown = json.loads(status.stdout)
    assert shown["airflow"] == {
        "where": "no Airflow recorded for this workspace (.airflow.json)",
        "error": None,
    }
    assert shown["retrain_threshold_rows"]["value"] == 400
