"""A real MLflow SQLite store per test, and the few writes tests need to set one up.

Creating the schema of a new SQLite store takes seconds, so one empty store is made per session
and each test gets a copy of its file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow import MlflowClient

VERSIONS = {"feature_version": "f1", "split_version": "s1", "model_version": "m1"}


def empty_store(path: Path) -> Path:
    """Create an MLflow SQLite store with its schema at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def copy_store(template: Path, dest_dir: Path) -> str:
    """A private copy of the template store; its tracking URI."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "mlflow.db"
    shutil.copyfile(template, dest)
    return f"sqlite:///{dest}"


DEFAULT_METRICS = {"master_rows": 100, "f1_macro": 0.9}


def log_run(
    client: MlflowClient,
    experiment_id: str,
    start: int,
    status: str = "FINISHED",
    versions: dict[str, str] | None = None,
    **metrics: float | None,
) -> str:
    """A run like the train stage logs: the three versions (VERSIONS updated by `versions`),
    master_rows=100 and f1_macro=0.9 unless `metrics` say otherwise; None logs no such metric."""
    run = client.create_run(experiment_id, start_time=start)
    run_id = run.info.run_id
    for key, value in {**VERSIONS, **(versions or {})}.items():
        client.log_param(run_id, key, value)
    for key, number in {**DEFAULT_METRICS, **metrics}.items():
        if number is not None:
            client.log_metric(run_id, key, number)
    if status != "RUNNING":
        client.set_terminated(run_id, status, end_time=start + 1)
    return run_id


def register(client: MlflowClient, name: str, run_id: str, alias: str | None = None) -> str:
    """A new version of `name` from `run_id`, with `alias` pointed at it when given."""
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = str(client.create_model_version(name, source=source, run_id=run_id).version)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version
