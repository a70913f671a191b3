"""Starting `data_pipeline_dag` seconds after a `_READY`, and running it again while batches wait.

In: the workspace. Out, for the DAG file to wire:
- `ReadyBatchTrigger`, an event trigger that runs in Airflow's triggerer: it looks at the drop
  folder's queue every `poll_seconds` (a directory listing and a stat per entry) and fires once
  for each `_READY` it has not seen before. An asset watcher turns each firing into an asset
  event, and the asset event starts a run;
- `batch_schedule`: that asset, or the five-minute tick (which still picks up anything the
  trigger could not see, such as a batch left claimed by a run that died);
- `drain_tasks`: after a run, a check of the queue and, while a batch waits and the lock is
  free, a run of the DAG again, so a queue of batches drains back to back instead of one per tick.
Airflow's own `max_active_runs=1` keeps the runs one after another. A triggerer restart forgets
what it saw and fires once for whatever is ready: a run with nothing to do ends at its claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

CLASSPATH = "mainstem.flow.ready_trigger.ReadyBatchTrigger"
TICK = "*/5 * * * *"


def new_ready(seen: set[tuple[str, float]], now_ready: set[tuple[str, float]]) -> list[str]:
    """The entries (by name) whose `_READY` was not there at the last look, in name order."""
    return sorted({name for name, _at in now_ready - seen})


def _drop_folder(workspace: str) -> Path:
    from mainstem.params import load_params

    return load_params(Path(workspace)).ingest.incoming_dir


def _ready_now(incoming: Path) -> set[tuple[str, float]]:
    from mainstem.intake.queue import ready_entries

    return {(entry.name, entry.ready_at) for entry in ready_entries(incoming)}


class ReadyBatchTrigger(BaseEventTrigger):
    """Fires when a batch in the workspace's drop folder gets its `_READY`."""

    def __init__(self, workspace: str, poll_seconds: float = 1.0) -> None:
        super().__init__()
        self.workspace = workspace
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"workspace": self.workspace, "poll_seconds": self.poll_seconds}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        incoming = await asyncio.to_thread(_drop_folder, self.workspace)
        seen: set[tuple[str, float]] = set()
        while True:
            now_ready = await asyncio.to_thread(_ready_now, incoming)
            fresh = new_ready(seen, now_ready)
            seen = now_ready
            if fresh:
                names = ", ".join(name or "(root)" for name in fresh)
                self.log.info("ready in the drop folder: %s", names)
                yield TriggerEvent({"ready": fresh})
            await asyncio.sleep(self.poll_seconds)


def batch_schedule(workspace: Path) -> Any:
    """The data DAG's schedule: a `_READY` in the drop folder (event-driven), or the tick."""
    from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable

    drop_folder = Asset(
        name="mainstem_drop_folder",
        uri=f"file://{workspace.resolve()}/drop-folder",
        watchers=[AssetWatcher(name="ready_batch", trigger=ReadyBatchTrigger(str(workspace)))],
    )
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(TICK, timezone="UTC"), assets=drop_folder
    )


def drain_tasks(workspace: Path, dag_id: str) -> Any:
    """A check of the queue after the batch path (whatever its outcome), then the DAG again
    while a batch waits; the first of the two, for the DAG file to put after the path."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import task

    @task.short_circuit(trigger_rule="all_done")
    def batches_waiting() -> bool:
        from mainstem.flow.queue_drain import batches_waiting as waiting

        return waiting(workspace)

    check = batches_waiting()
    check >> TriggerDagRunOperator(task_id="drain_queue", trigger_dag_id=dag_id)
    return check
