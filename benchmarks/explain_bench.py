"""P7: `mainstem retrain explain` as an operator runs it, wall time of the whole command.

In: a Size (unused: the workspace is empty either way) and a scratch folder. Out: the wall time of
`python -m mainstem.cli retrain explain --workspace W` in a fresh process, on a fresh workspace
with no MLflow store yet (the dry run must create none) and then on a workspace whose empty store
exists; each the best of 3 after one warm-up run, so the figure is the command on a warm machine
(files in the page cache), not the first import from disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.flow.workspace import create_workspace, source_root
from mainstem.params import load_params
from mainstem.training.registry import connect, tracking_uri

BOUND_SECONDS = 3.0


def explain_seconds(workspace: Path) -> float:
    """Wall time of one `retrain explain` in a new process, without Airflow in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACK"))}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mainstem.cli", "retrain", "explain", "--workspace", str(workspace)],
        cwd=source_root(),
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def best_of_three(workspace: Path) -> float:
    explain_seconds(workspace)  # warm-up
    return min(explain_seconds(workspace) for _ in range(3))


def run(size: Size, work: Path, results: Results) -> None:
    print("P7: mainstem retrain explain, the whole command", flush=True)
    workspace = create_workspace(work / "p7" / "workspace")
    store = load_params(workspace).train.tracking_db
    fresh = best_of_three(workspace)
    assert not store.exists(), f"retrain explain created {store}"
    results.measure("P7", "retrain explain, no MLflow store yet (best of 3)", fresh)
    connect(tracking_uri(load_params(workspace))).search_experiments()  # creates the empty store
    existing = best_of_three(workspace)
    results.measure("P7", "retrain explain, an empty MLflow store (best of 3)", existing)
    results.target(
        Target(
            "P7",
            "`mainstem retrain explain` in a fresh workspace, seconds",
            fresh,
            BOUND_SECONDS,
            "at_most",
            "wall time of the command in a new process (`python -m mainstem.cli retrain explain`, "
            "no Airflow recorded), best of 3 after a warm-up; it creates no file.",
        )
    )
