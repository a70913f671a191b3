"""The threshold the DAGs use is the one `mainstem status` and `retrain explain` print.

The real launcher (`make airflow`): api-server, scheduler and dag-processor on 127.0.0.1. The CLI
runs in a plain shell, without `AIRFLOW_HOME`, and finds that Airflow by itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.services import free_port
from tests.func.test_cli_reads_airflow import run_cli


@pytest.fixture
def stack(workspace: Path, tmp_path: Path) -> Iterator[AirflowStack]:
    stack = AirflowStack(workspace, tmp_path / "airflow", port=free_port())
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.e2e
def test_status_and_explain_print_the_variable_set_through_the_rest_api(
    stack: AirflowStack, workspace: Path
) -> None:
    shown = stack.api("GET", "/api/v2/variables/RETRAIN_THRESHOLD_ROWS")
    assert shown["value"] == "400"
    assert "retrain_policy_dag" in shown["description"]
    stack.api(
        "PATCH",
        "/api/v2/variables/RETRAIN_THRESHOLD_ROWS",
        {"key": "RETRAIN_THRESHOLD_ROWS", "value": "150"},
    )

    status = run_cli("status", "--workspace", str(workspace), "--json")
    explained = run_cli("retrain", "explain", "--workspace", str(workspace))

    assert status.returncode == 0, status.stderr
    threshold = json.loads(status.stdout)["retrain_threshold_rows"]
    source = f"Airflow Variable RETRAIN_THRESHOLD_ROWS, from Airflow at {stack.url}"
    assert threshold["value"] == "150"
    assert threshold["source"].startswith(source)
    assert explained.returncode == 0, explained.stderr
    assert f"  threshold: 150 rows ({source}" in explained.stdout

    stack.stop()
    stopped = run_cli("status", "--workspace", str(workspace))
    assert (
        f"Airflow at {stack.url} (make airflow, recorded in .airflow.json) cannot be reached"
        in (stopped.stdout)
    )
