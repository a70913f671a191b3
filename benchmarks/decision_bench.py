"""P6: the retrain decision against an MLflow store holding many runs.

In: a Size. Out: the time of `policy.decide_retrain` (the store look-up and the verdict on it)
against a SQLite MLflow store with `mlflow_runs` runs (half of them logged under other
feature/split/model versions, so the search has to filter) and a production model whose run is
among them: once as the first call in the process (the store's engine is created; `import mlflow`
is already done) and once warm.
The runs are logged through MLflow's client twice, then copied in bulk inside the store's
database, which takes seconds where logging 10,000 runs one by one takes minutes.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size

VERSIONS = {"feature_version": "f1", "split_version": "s1", "model_version": "m1"}
OLD_VERSIONS = {"feature_version": "f0", "split_version": "s1", "model_version": "m1"}
_EXPERIMENT, _MODEL, _ALIAS = "benchmark", "benchmark-model", "production"


def _log(client: object, experiment_id: str, start: int, versions: dict[str, str]) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, start_time=start)  # type: ignore[attr-defined]
    run_id = str(run.info.run_id)
    client.log_batch(  # type: ignore[attr-defined]
        run_id,
        metrics=[Metric("master_rows", 1000.0, start, 0), Metric("f1_macro", 0.9, start, 0)],
        params=[Param(k, v) for k, v in versions.items()],
    )
    client.set_terminated(run_id, "FINISHED", end_time=start + 1)  # type: ignore[attr-defined]
    return run_id


def _copy_runs(db: Path, template: str, count: int, first_start: int) -> None:
    """`count` copies of run `template`, one second apart, in every table keyed by run."""
    with sqlite3.connect(db) as con:
        con.execute("CREATE TEMP TABLE copies (id TEXT, start INTEGER)")
        con.executemany(
            "INSERT INTO copies VALUES (?, ?)",
            [(f"{template[:16]}{n:016x}", first_start + 1000 * n) for n in range(count)],
        )
        for table in ("runs", "params", "metrics", "latest_metrics", "tags"):
            columns = [row[1] for row in con.execute(f"PRAGMA table_info({table})")]
            chosen = {
                "run_uuid": "c.id",
                "name": "c.id",
                "start_time": "c.start",
                "end_time": "c.start + 1",
            }
            values = ", ".join(chosen.get(col, f"t.{col}") for col in columns)
            con.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} "
                f"FROM {table} AS t, copies AS c WHERE t.run_uuid = ?",
                (template,),
            )


def build_store(folder: Path, runs: int) -> str:
    from mlflow import MlflowClient

    folder.mkdir(parents=True)
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment(_EXPERIMENT, artifact_location=str(folder / "art"))
    start = 1_700_000_000_000
    old = _log(client, experiment_id, start, OLD_VERSIONS)
    current = _log(client, experiment_id, start + 1, VERSIONS)
    _copy_runs(db, old, runs // 2 - 1, start + 2)
    _copy_runs(db, current, runs - runs // 2 - 1, start + 3)
    production = _log(client, experiment_id, start + 10_000_000_000, VERSIONS)
    client.create_registered_model(_MODEL)
    version = client.create_model_version(_MODEL, source=f"{folder}/art/model", run_id=production)
    client.set_registered_model_alias(_MODEL, _ALIAS, str(version.version))
    found = client.search_runs([experiment_id], max_results=50_000)
    assert len(found) == runs + 1, len(found)
    return uri


def decide_once(uri: str, rows: int) -> tuple[float, bool]:
    from mainstem.training.policy import Scope, decide_retrain, parse_counts
    from mainstem.training.registry import connect

    start = time.perf_counter()
    decision = decide_retrain(
        connect(uri), Scope(_EXPERIMENT, _MODEL, _ALIAS), parse_counts(rows, None, 400)
    )
    elapsed = time.perf_counter() - start
    assert decision.basis == "growth", decision
    return elapsed, decision.retrain


def run(size: Size, work: Path, results: Results) -> None:
    print(f"P6: the retrain decision with {size.mlflow_runs:,} MLflow runs", flush=True)
    start = time.perf_counter()
    uri = build_store(work / "p6", size.mlflow_runs)
    results.measure(
        "P6", f"build a store of {size.mlflow_runs:,} runs (setup)", time.perf_counter() - start
    )
    results.sample_load()
    first, _ = decide_once(uri, 1500)
    warm = min(decide_once(uri, 1500)[0] for _ in range(3))
    results.measure("P6", "decision: first call in the process", first)
    results.measure("P6", "decision: warm (best of 3)", warm)
    results.target(
        Target(
            "P6",
            f"retrain decision with {size.mlflow_runs:,} MLflow runs, seconds",
            first,
            1.0,
            "at_most",
            "policy.decide_retrain against a SQLite store (half the runs under other versions); "
            "first call in the process, with `import mlflow` already done.",
        )
    )
