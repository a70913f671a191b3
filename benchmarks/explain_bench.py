"""P12: `mainstem retrain explain` as an operator runs it, wall time of the whole command.

In: a Size (unused: the store holds one training either way) and a scratch folder. Out: the wall
time of `python -m mainstem.cli retrain explain --workspace W` in a fresh process, on a fresh
workspace with no MLflow store yet (the dry run must create none) and then on one whose store
holds a first training (a FINISHED run, registered, with the production alias), so the whole
chain is read; each the best of 3 after one warm-up run, so the figure is the command on a warm
machine (files in the page cache), not the first import from disk.
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
from mainstem.training.registry import connect, ensure_experiment, experiment_name, tracking_uri

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


def store_with_production(uri: str, experiment: str, model_name: str, alias: str) -> None:
    """The store as it is after a first training: a FINISHED run with the three versions and
    master_rows, registered, with the production alias on it."""
    client = connect(uri)
    experiment_id = ensure_experiment(client, experiment)
    run_id = client.create_run(experiment_id, start_time=1_000).info.run_id
    for key in ("feature_version", "split_version", "model_version"):
        client.log_param(run_id, key, "v1")
    client.log_metric(run_id, "master_rows", 100)
    client.set_terminated(run_id, "FINISHED", end_time=1_001)
    client.create_registered_model(model_name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = client.create_model_version(model_name, source=source, run_id=run_id)
    client.set_registered_model_alias(model_name, alias, version.version)


def run(size: Size, work: Path, results: Results) -> None:
    print("P12: mainstem retrain explain, the whole command", flush=True)
    workspace = create_workspace(work / "p12" / "workspace")
    params = load_params(workspace)
    store = params.train.tracking_db
    fresh = best_of_three(workspace)
    assert not store.exists(), f"retrain explain created {store}"
    results.measure("P12", "retrain explain, no MLflow store yet (best of 3)", fresh)
    train = params.train
    store_with_production(
        tracking_uri(params), experiment_name(params), train.model_name, train.production_alias
    )
    existing = best_of_three(workspace)
    results.measure("P12", "retrain explain, a store with production (best of 3)", existing)
    how = (
        "wall time of the command in a new process (`python -m mainstem.cli retrain explain`, "
        "no Airflow recorded), best of 3 after a warm-up"
    )
    results.target(
        Target(
            "P12",
            "`mainstem retrain explain` with no MLflow store yet, seconds",
            fresh,
            BOUND_SECONDS,
            "at_most",
            f"{how}; it creates no file.",
        )
    )
    results.target(
        Target(
            "P12",
            "`mainstem retrain explain` on a store holding production, seconds",
            existing,
            BOUND_SECONDS,
            "at_most",
            f"{how}; the SQLite store is read read-only, without MLflow.",
        )
    )
