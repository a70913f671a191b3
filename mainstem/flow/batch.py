"""The steps that carry one claimed batch through the pipeline, shared by the DAG and the CLI.

In: a workspace (its params) and a claim. Out, step by step: a preflight (can every path be
written, is there room), the claim, the removal of what a crashed run left half-built, `dvc repro
merge`, `dvc push`, a lineage commit, the published `master_rows`, and the release of the drop
folder (to quarantine when the contract rejected the batch). `data_pipeline_dag` runs each step as
its own task; `process_next_batch` runs them in order in one process, for the demo and for local
use. Every step may be repeated after a crash without applying rows twice: a run killed anywhere
is finished by the next one, which takes over the dead run's lock and resumes the batch.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem import crashpoints
from mainstem.commands import dvc
from mainstem.durable import clear_staging
from mainstem.errors import BatchFailedError
from mainstem.flow.lineage import BatchRecord, record
from mainstem.intake import lock
from mainstem.intake.dropfolder import ClaimResult, Idle, Rejected, claim_batch, release_batch
from mainstem.intake.dropfolder import read_ticket as read_claim_ticket
from mainstem.intake.preflight import preflight
from mainstem.params import Params, load_params
from mainstem.validation.layout import read_report

log = logging.getLogger(__name__)
REPRO_TARGET = "merge"
_STAGE_ERROR = re.compile(r"^\w+: error: .+$", re.MULTILINE)


def repro_args() -> list[str]:
    return ["repro", REPRO_TARGET]


def lineage_paths(params: Params) -> list[Path]:
    """The small, git-tracked files describing the pipeline's state after a batch or a training."""
    outputs = [
        params.ingest.raw_dir,
        params.validate.validated_dir,
        params.merge.master_dir,
        params.train.model_dir,
    ]
    return [
        params.root / "dvc.lock",
        params.ingest.claimed_batch,
        params.validate.metrics_file,
        params.merge.metrics_file,
        params.train.request_file,
        params.train.metrics_file,
        *sorted({out.parent / ".gitignore" for out in outputs}),
    ]


def remote_configured(root: Path) -> bool:
    """Whether the workspace has a default DVC remote (read in-process: no `dvc` start-up)."""
    from dvc.config import Config

    return bool(Config(dvc_dir=str(Path(root) / ".dvc"))["core"].get("remote"))


def clear_leftovers(params: Params) -> list[Path]:
    """Remove staging folders and scratch files a killed run left beside the pipeline's outputs.

    Call it holding the batch lock, before `dvc repro`: then no writer of this workspace is
    staging anything, and whatever is there belongs to a run that died.
    """
    parents = {
        params.ingest.claimed_batch.parent,
        params.ingest.raw_dir.parent,
        params.validate.validated_dir.parent,
        params.merge.master_dir.parent,
        params.validate.metrics_file.parent,
        params.merge.metrics_file.parent,
    }
    removed = [path for parent in sorted(parents) for path in clear_staging(parent)]
    for path in removed:
        log.warning("removed %s, left by an interrupted run", path)
    return removed


def run_dvc(root: Path, args: list[str], batch_id: str) -> str:
    """Run one dvc command for the claimed batch; a BatchFailedError naming the failed stage if not."""
    crashpoints.reach(f"dvc {args[0]}")
    # a person at a terminal sees DVC's own transfer bars for a push; its errors reach them too
    shown = args[0] == "push" and sys.stderr.isatty()
    completed = dvc(args, root, check=False, show_progress=shown)
    if completed.returncode != 0:
        output = f"{completed.stderr or ''}\n{completed.stdout}"
        causes = _STAGE_ERROR.findall(output) or output.strip().splitlines()[-5:]
        raise BatchFailedError(
            f"batch {batch_id}: `dvc {' '.join(args)}` failed: " + " | ".join(causes) + ". "
            "The batch stays claimed and the master is unchanged; fix the cause and run again: "
            "the next run resumes the batch."
        )
    return completed.stdout


def batch_report(params: Params, batch_id: str) -> dict[str, Any]:
    """The batch's validation report; a LookupError if validate has not produced one."""
    report = read_report(params.validate.validated_dir, batch_id)
    if report is None:
        raise LookupError(f"batch {batch_id} has no validation report; did `dvc repro` run?")
    return report


def master_rows(params: Params) -> int:
    """`master_rows` as DVC reports it from the tracked metrics file."""
    from mainstem.metrics import read_metric

    file = str(params.merge.metrics_file.relative_to(params.root))
    return int(read_metric(params.root, file, "master_rows"))


def record_lineage(params: Params, batch_id: str, duplicate: bool | None = None) -> str | None:
    """Commit the batch's lineage; a duplicate delivery is recorded under the name it came with."""
    if not params.lineage_enabled:
        log.info("lineage recording is off (lineage.enabled: false)")
        return None
    ticket = read_claim_ticket(params.ingest)
    current = ticket.get("batch_id") == batch_id
    if duplicate is None:
        duplicate = current and bool(ticket.get("duplicate_of"))
    delivered_as = str(ticket["name"]) if current and ticket.get("name") else None
    rows = master_rows(params)
    report = batch_report(params, batch_id)
    message = BatchRecord.from_report(report, rows, duplicate, delivered_as).message()
    return record(params.root, lineage_paths(params), message)


def release(params: Params, batch_id: str, owner: lock.LockOwner | None = None) -> dict[str, Any]:
    """Release the drop folder; the batch's report (quarantined with it when rejected).

    With `owner`, the lock is dropped only while that claim still holds it.
    """
    report = batch_report(params, batch_id)
    release_batch(params.ingest, report if report["status"] == "rejected" else None, owner)
    return report


def claimed_batch_id(params: Params) -> str:
    batch_id = read_claim_ticket(params.ingest).get("batch_id")
    if not batch_id:
        raise LookupError("no batch is claimed")
    return str(batch_id)


@dataclass(frozen=True)
class BatchRun:
    claim: ClaimResult
    report: dict[str, Any] | None = None
    master_rows: int | None = None
    commit: str | None = None


PublishRows = Callable[[int], None]


def process_next_batch(
    root: Path, run_id: str | None = None, publish_rows: PublishRows | None = None
) -> BatchRun:
    """Claim the waiting batch and carry it all the way through, in this process.

    `publish_rows` receives `master_rows` after the lineage commit and before the release (the
    Airflow Variable update goes there); it must be idempotent, as a crash after it repeats it.
    """
    root = Path(root)
    params = load_params(root)
    run_id = run_id or f"cli-{socket.gethostname()}-{os.getpid()}"
    preflight(params)
    claim = claim_batch(params.ingest, run_id, time.time())
    if isinstance(claim, (Idle, Rejected)):
        return BatchRun(claim)
    incoming = params.ingest.incoming_dir
    clear_leftovers(params)
    run_dvc(root, repro_args(), claim.batch_id)
    owner = lock.heartbeat(incoming, claim.owner, time.time())
    if remote_configured(root):
        run_dvc(root, ["push"], claim.batch_id)
    commit = record_lineage(params, claim.batch_id, claim.duplicate)
    rows = master_rows(params)
    crashpoints.reach("publish master_rows")
    if publish_rows is not None:
        publish_rows(rows)
    report = release(params, claim.batch_id, owner)  # which renews the lock first
    return BatchRun(claim, report, rows, commit)
