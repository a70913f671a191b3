"""Running the steps of a path: one step (an Airflow task) or the whole list (the CLI, one task).

In: a Flow, a FlowRun (the workspace, the id of the run that owns the work, and how to publish
`master_rows`), and the state the earlier steps produced. Out: the state with this step's output
merged in, or None when a step found nothing to do and the path ends there. Before every step
that acts on the claimed batch the runner proves the run still holds the `_PROCESSING` lock and
renews it with this process as the live holder, in every mode: a long `dvc repro` is never taken
for a dead owner, and a run that lost its lock (another claimant recovered it) stops instead of
writing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mainstem.commands import dvc
from mainstem.errors import LockError
from mainstem.flow.sequences import Flow, StepState
from mainstem.flow.validated_transfer import push_rebuilt
from mainstem.intake import lock
from mainstem.params import Params, load_params

log = logging.getLogger(__name__)


@dataclass
class FlowRun:
    """One run of a path in a workspace, and what in-process callers want to see of it."""

    root: Path
    owner_id: str
    publish_rows: Callable[[int], None] | None = None
    owner: lock.LockOwner | None = None  # the lock as this run last renewed it
    one_process: bool = False  # every step runs in this process: the run ends when it does
    seen: dict[str, Any] = field(default_factory=dict)  # objects for in-process callers

    @property
    def params(self) -> Params:
        return load_params(self.root)


def own_lock(incoming: Path, owner_id: str) -> lock.LockOwner:
    """This run's lock on the drop folder `incoming` as it stands; a LockError if it lost it."""
    holder = lock.read_owner(incoming)
    if holder is None or holder.run_id != owner_id:
        held_by = holder.describe() if holder else "nobody"
        raise LockError(f"run {owner_id} no longer holds the batch lock (held by {held_by})")
    return holder


def hold_lock(incoming: Path, owner_id: str) -> lock.LockOwner:
    """Prove this run still owns the lock and renew it with the current process as holder."""
    return lock.heartbeat(incoming, own_lock(incoming, owner_id), time.time())


def remote_configured(root: Path) -> bool:
    """Whether the workspace has a default DVC remote (read in-process: no `dvc` start-up)."""
    from dvc.config import Config

    return bool(Config(dvc_dir=str(Path(root) / ".dvc"))["core"].get("remote"))


def run_step(flow: Flow, name: str, run: FlowRun, state: StepState) -> StepState | None:
    """Run one step of `flow`; the state with its output merged in, or None to end the path."""
    step = flow.step(name)
    if step.holds_lock:
        ingest = run.params.ingest
        run.owner = hold_lock(ingest.incoming_dir, run.owner_id)
        if ingest.drop_zone_url:
            from mainstem.intake.s3_claim import renew  # boto3 only for an S3 drop zone

            renew(ingest, run.owner)
    output = step.function()(run, state)
    if output is None:
        return None
    return {**state, **output}


def run_flow(flow: Flow, run: FlowRun, state: StepState | None = None) -> StepState | None:
    """Every step of `flow` in order, in this process; None when a step ended the path early."""
    current = dict(state or {})
    for step in flow.steps:
        result = run_step(flow, step.name, run, current)
        if result is None:
            log.info("%s: nothing more to do after %s", flow.name, step.name)
            return None
        current = result
    return current


def push_outputs(root: Path, run_dvc: Callable[[list[str]], str] | None = None) -> str:
    """`dvc push` to the workspace's default remote, and after a rebuild every past batch's
    validated files; skipped, with a warning, when there is no remote."""
    if not remote_configured(root):
        log.warning("no DVC remote configured in %s; nothing pushed", root)
        return ""
    if run_dvc is not None:
        pushed = run_dvc(["push"])
    else:
        # a person at a terminal sees DVC's own transfer bars for a push
        pushed = dvc(["push"], root, show_progress=sys.stderr.isatty()).stdout
    # a rebuild stored every past batch's validated files outside dvc.lock: they go too
    push_rebuilt(root, run_dvc)
    return pushed
