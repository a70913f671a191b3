"""Draining the drop folder's queue: one batch after another while batches wait.

In: a workspace. Out: the BatchRun of each batch taken, oldest `_READY` first, until the claim
finds nothing to do (nothing ready, only batches whose files are still arriving, or a live run
holding the lock). A rejected batch is quarantined and the next one is taken; any other error
stops the drain with the batch left claimed, as a single `mainstem process` would. Airflow's
`data_pipeline_dag` asks `batches_waiting` after each run and triggers itself again while it says
yes, so the queue drains at the pipeline's own pace instead of one batch per schedule tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from mainstem.flow.batch import BatchRun, process_next_batch
from mainstem.intake import lock
from mainstem.intake.dropfolder import Idle
from mainstem.intake.queue import ready_entries
from mainstem.params import load_params

log = logging.getLogger(__name__)


def drain_queue(
    root: Path,
    publish_rows: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> Iterator[BatchRun]:
    """Process batches until none can be claimed (or `limit` were taken); each run as it ends."""
    taken = 0
    while limit is None or taken < limit:
        run = process_next_batch(root, publish_rows=publish_rows)
        if isinstance(run.claim, Idle):
            if taken == 0:
                yield run  # say why nothing was done
            return
        taken += 1
        yield run


def batches_waiting(root: Path) -> bool:
    """Whether a batch waits with its `_READY` while the lock is free, so a next run has work.

    A batch left claimed by a run that stopped on an error does not count: running again at
    once would repeat the error in a loop; the schedule's next tick resumes it, as before.
    """
    incoming = load_params(root).ingest.incoming_dir
    if not incoming.is_dir() or lock.read_owner(incoming) is not None:
        return False
    return bool(ready_entries(incoming))
