"""P5: one batch through the whole pipeline, up to the retrain decision.

In: a Size. Out: the time of each step that carries a delivered batch into a versioned, pushed
master, in a real workspace (git + DVC, a local DVC remote) whose master already holds
`flow_master_rows` rows: claim the drop folder, `dvc repro merge` through DVC's Python API (the
stage commands still run as their own processes; each stage's command and DVC's work around it
are timed by wrapping DVC's own functions), push to the remote, read `master_rows` back through
DVC's metrics API, decide whether to retrain (`policy.decide` on the workspace's MLflow store).
The lineage commit and the release are timed too, outside the target. No scheduler is involved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.images_bench import photo
from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.flow import batch as batchflow
from mainstem.flow.workspace import create_workspace, source_root
from mainstem.intake.dropfolder import Claimed, claim_batch
from mainstem.intake.submit import submit
from mainstem.local.samples import SUPPLIERS
from mainstem.params import load_params
from mainstem.training.policy import PolicyInputs, decide
from mainstem.training.registry import connect, tracking_uri


@dataclass(frozen=True)
class Photos:
    """`count` square photos, `side` pixels wide."""

    count: int
    side: int


def delivery(folder: Path, keys: np.ndarray, photos: Photos, seed: int) -> Path:
    """A produce delivery in `folder`: one Parquet table whose rows share the photos."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    names = []
    for number in range(photos.count):
        fmt = "PNG" if number % 4 == 3 else "JPEG"
        image = f"images/{seed}-{number:05d}.{'png' if fmt == 'PNG' else 'jpg'}"
        photo(seed * 10_000 + number, photos.side).save(folder / image, format=fmt)
        names.append(image)
    n = len(keys)
    days = np.datetime64("2021-01-01") + rng.integers(0, 1500, n).astype("timedelta64[D]")
    table = pa.table(
        {
            "item_id": pa.array(keys, pa.int64()),
            "supplier": pa.array(np.array(SUPPLIERS)[rng.integers(0, 4, n)].tolist()),
            "weight_g": np.round(rng.uniform(80, 900, n), 1),
            "diameter_mm": np.round(rng.uniform(40, 120, n), 1),
            "harvested_on": pa.array(days.astype(str).tolist()),
            "image_file": pa.array([names[i % photos.count] for i in range(n)]),
            "grade": pa.array(np.array(["A", "B", "C"])[rng.integers(0, 3, n)].tolist()),
        }
    )
    pq.write_table(table, folder / f"{folder.name}.parquet")
    return folder


def _deliver(root: Path, folder: Path) -> None:
    submit([folder], load_params(root).ingest.incoming_dir, folder.name)


def run(size: Size, work: Path, results: Results) -> None:
    print(
        f"P5: a {size.flow_batch_rows:,}-row batch against a {size.flow_master_rows:,}-row master"
    )
    root = create_workspace(work / "p5" / "workspace", source_root())
    connect(tracking_uri(load_params(root))).search_experiments()  # the store exists already
    deliveries = work / "p5" / "deliveries"
    seed_keys = np.arange(size.flow_master_rows, dtype=np.int64)
    _deliver(root, delivery(deliveries / "seed", seed_keys, Photos(20, size.flow_image_side), 1))
    start = time.perf_counter()
    seeded = batchflow.process_next_batch(root)
    assert seeded.report is not None
    assert seeded.report["status"] == "accepted", seeded.report
    results.measure(
        "P5", f"seed the {size.flow_master_rows:,}-row master (setup)", time.perf_counter() - start
    )

    updates = size.flow_batch_rows // 10
    keys = np.concatenate(
        [
            np.arange(size.flow_master_rows - updates, size.flow_master_rows),
            np.arange(
                size.flow_master_rows, size.flow_master_rows + size.flow_batch_rows - updates
            ),
        ]
    )
    photos = Photos(size.flow_images, size.flow_image_side)
    batch = delivery(deliveries / "batch", keys, photos, 2)
    _deliver(root, batch)
    results.sample_load()
    steps = _timed_flow(root)
    label = f"{size.flow_batch_rows:,} rows, {size.flow_images} images"
    for step, seconds, _counted in steps:
        results.measure("P5", f"{label}: {step}", seconds)
    total = sum(seconds for _step, seconds, counted in steps if counted)
    results.measure("P5", f"{label}: claim → repro → push → metrics → decision", total)
    results.target(
        Target(
            "P5",
            "claim → dvc repro → push → metrics → decision, seconds",
            total,
            15.0,
            "at_most",
            f"{label} against a {size.flow_master_rows:,}-row master in a real git + DVC "
            "workspace with a local remote; DVC through its Python API; scheduler excluded.",
        )
    )


def _timed_flow(root: Path) -> list[tuple[str, float, bool]]:
    """(step, seconds, counted in the target) for each step, with `dvc repro` broken down."""
    import dvc.stage.run
    from dvc.repo import Repo
    from dvc.stage import Stage

    params = load_params(root)
    steps: list[tuple[str, float, bool]] = []
    start = time.perf_counter()
    claim = claim_batch(params.ingest, "benchmark", time.time())
    steps.append(("claim", time.perf_counter() - start, True))
    assert isinstance(claim, Claimed), claim
    stage_seconds: dict[str, float] = {}
    command_seconds: dict[str, float] = {}
    with (
        chdir(root),
        patch.object(Stage, "reproduce", _timed(Stage.reproduce, stage_seconds)),
        patch.object(dvc.stage.run, "cmd_run", _timed(dvc.stage.run.cmd_run, command_seconds)),
    ):
        start = time.perf_counter()
        with Repo(str(root)) as repo:
            repo.reproduce(batchflow.REPRO_TARGET)
        repro = time.perf_counter() - start
        steps.append((f"dvc repro {batchflow.REPRO_TARGET} (Python API, one call)", repro, True))
        for stage, seconds in stage_seconds.items():
            command = command_seconds.get(stage, 0.0)
            steps.append((f"… {stage}: stage command (its own process)", command, False))
            steps.append(
                (f"… {stage}: DVC around it (hash deps and outs, cache)", seconds - command, False)
            )
        steps.append(
            ("… DVC: load the pipeline, write dvc.lock", repro - sum(stage_seconds.values()), False)
        )
        start = time.perf_counter()
        with Repo(str(root)) as repo:
            repo.push()
        steps.append(("dvc push (local remote)", time.perf_counter() - start, True))
    start = time.perf_counter()
    rows = batchflow.master_rows(params)
    steps.append(("read master_rows (dvc.api.metrics_show)", time.perf_counter() - start, True))
    assert rows > 0
    start = time.perf_counter()
    decision = decide(params, PolicyInputs(rows))
    steps.append(
        ("retrain decision (policy.decide, MLflow SQLite store)", time.perf_counter() - start, True)
    )
    assert decision.current_master_rows == rows
    start = time.perf_counter()
    batchflow.record_batch(params, claim.batch_id, claim.duplicate)
    steps.append(("(outside the target) lineage git commit", time.perf_counter() - start, False))
    start = time.perf_counter()
    report = batchflow.release_claimed(params, claim.batch_id)
    steps.append(
        ("(outside the target) release the drop folder", time.perf_counter() - start, False)
    )
    assert report["status"] == "accepted", report["reasons"]
    return steps


def _timed(function: Callable[..., Any], seconds: dict[str, float]) -> Callable[..., Any]:
    """`function` (whose first argument is a DVC stage), adding its run time to `seconds`."""

    def timed(stage: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(stage, *args, **kwargs)
        finally:
            seconds[stage.addressing] = seconds.get(stage.addressing, 0.0) + (
                time.perf_counter() - start
            )

    return timed
