"""P7 and P8: a batch's latency and a queue's drain rate, through the real Airflow scheduler.

In: a Size. Out, on one local Airflow (api-server, scheduler, dag-processor and triggerer on
127.0.0.1, SQLite, LocalExecutor) over a fresh workspace:
- P7: `latency_batches` batches of `latency_rows` rows and `latency_images` photos, delivered one
  after another with `mainstem submit`'s queue layout and nothing else (no manual trigger): the
  seconds from each batch's `_READY` (its mtime) to its retrain decision: the end of the
  `data_pipeline_dag` task that merged it and decided (or of the `retrain_policy_dag` run, when
  that decides), that is master merged, metrics published and the retrain decision made. Median
  and worst, and the median of each hop: `_READY` to the run queued, to its first task started,
  to the decision. The event trigger starts the runs; the five-minute tick is
  there too but never comes first.
- P8: `drain_batches` batches of `drain_rows` rows put in the queue at once; batches per hour from
  the first `_READY` until the queue is empty and no data run is left queued or running.
The threshold is set out of reach, so no training runs: the figures are the batch path's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from benchmarks.flow_bench import Photos, delivery
from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.flow.queue_drain import batches_waiting
from mainstem.flow.sequences import BATCH_FLOW
from mainstem.flow.workspace import create_workspace, source_root
from mainstem.intake import lock
from mainstem.intake.delivery import READY
from mainstem.intake.submit import submit_to_queue
from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.services import free_port
from mainstem.names import DATA_DAG, POLICY_DAG, THRESHOLD_VARIABLE
from mainstem.params import load_params

BATCH_TIMEOUT = 600.0
UNFINISHED = {"queued", "running"}


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _recent_runs(stack: AirflowStack, dag_id: str, limit: int = 50) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{dag_id}/dagRuns?limit={limit}&order_by=-run_after"
    return list(stack.api("GET", path)["dag_runs"])


def _data_run_of(stack: AirflowStack, name: str, seen: set[str]) -> dict[str, Any] | None:
    """The finished data run that took the batch `name`, if there is one yet."""
    for run in _recent_runs(stack, DATA_DAG):
        if run["dag_run_id"] in seen or run["state"] in UNFINISHED:
            continue
        taken = stack.batches_of(run["dag_run_id"])
        if any(batch.get("name") == name for batch in taken):
            return run
        if run["state"] == "success" and not taken:
            seen.add(run["dag_run_id"])  # a run that found nothing to do
    return None


def _task(stack: AirflowStack, run_id: str, task_id: str) -> dict[str, Any]:
    path = f"/api/v2/dags/{DATA_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    return dict(stack.api("GET", path))


@dataclass(frozen=True)
class Hops:
    """Where one batch's seconds went, from its `_READY` to its retrain decision."""

    ready_to_run: float  # the trigger's asset event and the scheduler creating the run
    run_to_task: float  # the run queued until the task doing the work started
    work: float  # the task(s) or runs from then to the decision
    total: float


def _decided(stack: AirflowStack, name: str, seen: set[str], ready_at: float) -> Hops:
    """Where the seconds went for batch `name`, once its retrain decision is made.

    The decision is made at the end of the data run's `process_batch` task, or, when that task
    handed it to the policy (or with a task per step), at the end of the policy run.
    """
    deadline = time.monotonic() + BATCH_TIMEOUT
    while time.monotonic() < deadline:
        data_run = _data_run_of(stack, name, seen)
        if data_run is not None:
            seen.add(data_run["dag_run_id"])
            run_id = data_run["dag_run_id"]
            if data_run["state"] != "success":
                raise RuntimeError(f"batch {name}: data_pipeline_dag run {data_run['state']}")
            result = stack.xcom(DATA_DAG, run_id, BATCH_FLOW.name)
            first = BATCH_FLOW.name if isinstance(result, dict) else BATCH_FLOW.steps[0].name
            started = _seconds(_task(stack, run_id, first)["start_date"])
            if isinstance(result, dict) and not result["policy_needed"]:
                decided = _seconds(_task(stack, run_id, BATCH_FLOW.name)["end_date"])
            else:
                policy_id = f"after__{run_id}"
                policy = stack.wait_for_run(POLICY_DAG, policy_id, deadline - time.monotonic())
                decided = _seconds(policy["end_date"])
            queued = _seconds(data_run["queued_at"])
            return Hops(queued - ready_at, started - queued, decided - started, decided - ready_at)
        time.sleep(0.5)
    raise RuntimeError(f"batch {name} was not processed within {BATCH_TIMEOUT:.0f} s")


def _latency(stack: AirflowStack, root: Path, size: Size, results: Results) -> None:
    incoming = load_params(root).ingest.incoming_dir
    work = root.parent / "p7-deliveries"
    seen: set[str] = set()
    hops = []
    for number in range(size.latency_batches):
        first = 1_000_000 + number * size.latency_rows
        keys = np.arange(first, first + size.latency_rows, dtype=np.int64)
        photos = Photos(size.latency_images, size.flow_image_side)
        folder = delivery(work / f"p7-{number:03d}", keys, photos, 100 + number)
        entry, _ = submit_to_queue([folder], incoming, folder.name)
        ready_at = (incoming / entry / READY).stat().st_mtime
        hops.append(_decided(stack, folder.name, seen, ready_at))
        results.measure("P7", f"batch {number + 1}: _READY → decision", hops[-1].total)
    latencies = [hop.total for hop in hops]
    label = f"{size.latency_rows} rows + {size.latency_images} images"
    results.measure("P7", f"{label}, _READY → decision, worst", max(latencies))
    for what, seconds in (
        ("_READY → data run queued (asset event, run created)", [h.ready_to_run for h in hops]),
        ("run queued → first task started (scheduler, task start)", [h.run_to_task for h in hops]),
        ("first task started → decision made", [h.work for h in hops]),
    ):
        results.measure("P7", f"median: {what}", statistics.median(seconds))
    results.target(
        Target(
            "P7",
            f"{label}: _READY → master merged, metrics, retrain decision (median, s)",
            statistics.median(latencies),
            15.0,
            "at_most",
            f"real scheduler with triggerer, {len(latencies)} batches one after another, "
            "started by the drop folder's event trigger; worst in the measurements",
        )
    )


def _drained(stack: AirflowStack, root: Path) -> bool:
    if batches_waiting(root) or lock.read_owner(load_params(root).ingest.incoming_dir):
        return False
    return not any(run["state"] in UNFINISHED for run in _recent_runs(stack, DATA_DAG, 5))


def _drain_rate(stack: AirflowStack, root: Path, size: Size, results: Results) -> None:
    incoming = load_params(root).ingest.incoming_dir
    work = root.parent / "p8-deliveries"
    folders = []
    for number in range(size.drain_batches):
        first = 5_000_000 + number * size.drain_rows
        keys = np.arange(first, first + size.drain_rows, dtype=np.int64)
        folders.append(delivery(work / f"p8-{number:03d}", keys, Photos(1, 64), 500 + number))
    start = time.time()
    for folder in folders:
        submit_to_queue([folder], incoming, folder.name)
    results.measure("P8", f"{len(folders)} batches into the queue", time.time() - start)
    deadline = time.monotonic() + BATCH_TIMEOUT * max(1, len(folders) // 5)
    while not _drained(stack, root):
        if time.monotonic() > deadline:
            raise RuntimeError("the queue did not drain in time")
        time.sleep(1.0)
    elapsed = time.time() - start
    rate = len(folders) / elapsed * 3600
    results.measure("P8", f"{len(folders)} batches of {size.drain_rows} rows drained", elapsed)
    results.target(
        Target(
            "P8",
            f"a queue of {len(folders)} batches of {size.drain_rows} rows drains, batches/hour",
            rate,
            200.0,
            "at_least",
            "real scheduler, the queue filled at once; from the first _READY until no batch "
            "waits and no data_pipeline_dag run is queued or running",
        )
    )


def run(size: Size, work: Path, results: Results) -> None:
    print(
        f"P7/P8: {size.latency_batches} batches one by one, then a queue of "
        f"{size.drain_batches}, through the real scheduler"
    )
    root = create_workspace(work / "p7" / "workspace", source_root())
    stack = AirflowStack(root, work / "p7" / "airflow", port=free_port(), started_by="benchmarks")
    start = time.perf_counter()
    stack.start()
    results.measure("P7", "Airflow ready (setup)", time.perf_counter() - start)
    try:
        stack.set_variable(THRESHOLD_VARIABLE, str(10**12))
        _latency(stack, root, size, results)
        _drain_rate(stack, root, size, results)
    finally:
        stack.stop()
