"""The steps that carry one claimed batch through the pipeline, shared by the DAG and the CLI.

In: a workspace (its params) and a claim. Out, step by step: `dvc repro merge`, `dvc push`, a
lineage commit, the published `master_rows`, and the release of the drop folder (to quarantine
when the contract rejected the batch). `data_pipeline_dag` runs each step as its own task;
`process_next_batch` runs them in order in one process, for the demo and for local use.
Every step may be repeated after a crash without applying rows twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem import lock
from mainstem.commands import dvc
from mainstem.dropfolder import ClaimResult, Idle, Rejected, claim_batch, release_batch
from mainstem.dropfolder import read_ticket as read_claim_ticket
from mainstem.lineage import BatchRecord, record
from mainstem.metrics import read_metric
from mainstem.params import Params, load_params
from mainstem.validated_store import read_report

log = logging.getLogger(__name__)
REPRO_TARGET = "merge"


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
    return bool(dvc(["remote", "default"], root, check=False).stdout.strip())


def batch_report(params: Params, batch_id: str) -> dict[str, Any]:
    report = read_report(params.validate.validated_dir, batch_id)
    if report is None:
        raise LookupError(f"batch {batch_id} has no validation report; did `dvc repro` run?")
    return report


def master_rows(params: Params) -> int:
    """`master_rows` as DVC reports it from the tracked metrics file."""
    file = str(params.merge.metrics_file.relative_to(params.root))
    return int(read_metric(params.root, file, "master_rows"))


def record_lineage(params: Params, batch_id: str, duplicate: bool) -> str | None:
    if not params.lineage_enabled:
        log.info("lineage recording is off (lineage.enabled: false)")
        return None
    rows = master_rows(params)
    message = BatchRecord.from_report(batch_report(params, batch_id), rows, duplicate).message()
    return record(params.root, lineage_paths(params), message)


def release(params: Params, batch_id: str) -> dict[str, Any]:
    """Release the drop folder; the batch's report (quarantined with it when rejected)."""
    report = batch_report(params, batch_id)
    release_batch(params.ingest, report if report["status"] == "rejected" else None)
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


def process_next_batch(root: Path, run_id: str | None = None) -> BatchRun:
    """Claim the waiting batch and carry it all the way through, in this process."""
    params = load_params(root)
    run_id = run_id or f"cli-{socket.gethostname()}-{os.getpid()}"
    claim = claim_batch(params.ingest, run_id, time.time())
    if isinstance(claim, (Idle, Rejected)):
        return BatchRun(claim)
    owner = claim.owner
    dvc(repro_args(), root)
    owner = lock.heartbeat(params.ingest.incoming_dir, owner, time.time())
    if remote_configured(root):
        dvc(["push", "--quiet"], root)
    commit = record_lineage(params, claim.batch_id, claim.duplicate)
    rows = master_rows(params)
    lock.heartbeat(params.ingest.incoming_dir, owner, time.time())
    report = release(params, claim.batch_id)
    return BatchRun(claim, report, rows, commit)
