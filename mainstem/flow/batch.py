"""The steps of the batch path: claim → repro → push → record_lineage → publish → release.

In: a FlowRun (the workspace and the id of the run that owns the batch) and the state the earlier
steps produced. Out, step by step: a preflight (can every path be written, is there room) and the
claim, the removal of what a crashed run left half-built, `dvc repro merge`, `dvc push`, a lineage
commit, the published `master_rows`, and the release of the drop folder (to quarantine when the
contract rejected the batch), after which the pipeline page is rebuilt. `sequences.BATCH_FLOW`
orders them; `process_next_batch` runs them all in this process. Every step may be repeated after a
crash without applying rows twice: a run killed anywhere is finished by the next one, which takes
over the dead run's lock and resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mainstem import crashpoints
from mainstem.commands import run as run_command
from mainstem.durable import clear_staging
from mainstem.errors import BatchFailedError, BatchRejectedError, MainstemError
from mainstem.flow.dvc_push import push_batch
from mainstem.flow.import_ahead import AFTER_REPRO, imported_meanwhile
from mainstem.flow.lineage import BatchRecord, committed_text, record
from mainstem.flow.pipeline import require_committed_pipeline
from mainstem.flow.runner import FlowRun, push_outputs, run_flow
from mainstem.flow.sequences import BATCH_FLOW, StepState
from mainstem.intake.dropfolder import ClaimResult, Idle, Rejected, claim_batch, release_batch
from mainstem.intake.dropfolder import read_ticket as read_claim_ticket
from mainstem.intake.lock import LockOwner
from mainstem.intake.lock import give_up as give_up_lock
from mainstem.intake.preflight import preflight
from mainstem.intake.raw_store import INDEX as RAW_INDEX
from mainstem.intake.raw_store import pack_path
from mainstem.master.metrics import master_rows as tracked_master_rows
from mainstem.openlineage.stage_host import stage_host
from mainstem.params import SAFE_LOADER, IngestParams, Params
from mainstem.validation.layout import INDEX as VALIDATED_INDEX
from mainstem.validation.layout import batch_dir, read_report

log = logging.getLogger(__name__)
REPRO_TARGET = "merge"
DATA_STAGES = ("ingest", "validate", "merge")  # what `dvc repro merge` can run
# DVC loads its pipeline and the stage host imports for the first stage in about a second here:
# what the steps after the repro import waits until then, so as not to hold up the first stage
IMPORT_AHEAD_AFTER = 1.0
_STAGE_ERROR = re.compile(r"^\w+: error: .+$", re.MULTILINE)


def repro_args() -> list[str]:
    return ["repro", REPRO_TARGET]


def lineage_paths(params: Params) -> list[Path]:
    """The small, git-tracked files describing the pipeline's state after a batch or a training."""
    outputs = [
        pack_path(params.ingest.raw_dir),
        batch_dir(params.validate.validated_dir),
        params.merge.master_dir,
        params.train.model_dir,
    ]
    return [
        params.root / "dvc.lock",
        params.ingest.claimed_batch,
        params.ingest.raw_dir / RAW_INDEX,
        params.validate.validated_dir / VALIDATED_INDEX,
        params.validate.metrics_file,
        params.merge.metrics_file,
        params.train.request_file,
        params.train.metrics_file,
        params.validate.drift_reference,
        *sorted({out.parent / ".gitignore" for out in outputs}),
    ]


def clear_leftovers(params: Params) -> list[Path]:
    """Remove staging folders and scratch files a killed run left beside the pipeline's outputs.

    Call it holding the batch lock, before `dvc repro`: then no writer of this workspace is
    staging anything, and whatever is there belongs to a run that died.
    """
    parents = {
        params.ingest.claimed_batch.parent,
        params.ingest.raw_dir,
        params.ingest.raw_dir.parent,
        params.validate.validated_dir,
        params.validate.validated_dir.parent,
        params.merge.master_dir.parent,
        params.validate.metrics_file.parent,
        params.merge.metrics_file.parent,
    }
    removed = [path for parent in sorted(parents) for path in clear_staging(parent)]
    for path in removed:
        log.warning("removed %s, left by an interrupted run", path)
    return removed


def run_dvc(
    root: Path, args: list[str], batch_id: str, extra_env: Mapping[str, str] | None = None
) -> str:
    """Run one dvc command for the claimed batch; a BatchFailedError naming the failed stage."""
    crashpoints.reach(f"dvc {args[0]}")
    # a person at a terminal sees DVC's own transfer bars for a push; its errors reach them too
    shown = args[0] == "push" and sys.stderr.isatty()
    command = [sys.executable, "-m", "dvc", *args]
    completed = run_command(command, root, check=False, extra_env=extra_env, show_stderr=shown)
    if completed.returncode != 0:
        output = f"{completed.stderr or ''}\n{completed.stdout}"
        causes = _STAGE_ERROR.findall(output) or output.strip().splitlines()[-5:]
        raise BatchFailedError(
            f"batch {batch_id}: `dvc {' '.join(args)}` failed: " + " | ".join(causes) + ". "
            "The batch stays claimed and the master is unchanged; fix the cause and run again: "
            "the next run resumes the batch."
        )
    log.info("dvc %s:\n%s", " ".join(args), completed.stdout.strip())
    return completed.stdout


def batch_report(validated_dir: Path, batch_id: str) -> dict[str, Any]:
    """The batch's validation report; a LookupError if validate has not produced one."""
    report = read_report(validated_dir, batch_id)
    if report is None:
        raise LookupError(f"batch {batch_id} has no validation report; did `dvc repro` run?")
    return report


def master_rows(params: Params) -> int:
    """`master_rows` as DVC reports it from the tracked metrics file."""
    return tracked_master_rows(params.root, params.merge.metrics_file)


def claimed_batch_id(ingest: IngestParams) -> str:
    """The id of the batch the claim ticket names; a LookupError when nothing is claimed."""
    batch_id = read_claim_ticket(ingest).get("batch_id")
    if not batch_id:
        raise LookupError("no batch is claimed")
    return str(batch_id)


def record_batch(
    params: Params, batch_id: str, duplicate: bool | None = None, rows: int | None = None
) -> str | None:
    """Commit the batch's lineage; a duplicate delivery is recorded under the name it came with.

    `rows` is `master_rows` when the caller has read it already; else it is read here.
    """
    if not params.lineage_enabled:
        log.info("lineage recording is off (lineage.enabled: false)")
        return None
    ticket = read_claim_ticket(params.ingest)
    current = ticket.get("batch_id") == batch_id
    if duplicate is None:
        duplicate = current and bool(ticket.get("duplicate_of"))
    delivered_as = str(ticket["name"]) if current and ticket.get("name") else None
    rows = master_rows(params) if rows is None else rows
    report = batch_report(params.validate.validated_dir, batch_id)
    before = master_before(params)
    message = BatchRecord.from_report(report, rows, duplicate, delivered_as, before).message()
    return record(params.root, lineage_paths(params), message)


def _merge_out_hash(lock_text: str | None) -> str | None:
    """The master's DVC hash in a `dvc.lock` text; None when it records no merge."""
    lock = yaml.load(lock_text or "", Loader=SAFE_LOADER) or {}
    merge = lock.get("stages", {}).get(REPRO_TARGET) or {}
    outs = merge.get("outs") or [{}]
    return outs[0].get("md5")


def master_before(params: Params) -> tuple[int | None, bool]:
    """The master's rows at the last commit, and whether its content differs from that commit's.

    A re-delivered batch applies nothing unless the pipeline changed in between; the lineage
    message must not call it a duplicate when the master moved.
    """
    root = params.root
    metrics = committed_text(root, params.merge.metrics_file)
    rows = json.loads(metrics).get("master_rows") if metrics else None
    committed = _merge_out_hash(committed_text(root, root / "dvc.lock"))
    now = _merge_out_hash((root / "dvc.lock").read_text(encoding="utf-8"))
    return (int(rows) if rows is not None else None, committed != now)


def release_claimed(
    params: Params, batch_id: str, owner: LockOwner | None = None
) -> dict[str, Any]:
    """Release the drop folder; the batch's report (quarantined with it when rejected).

    With `owner`, the lock is dropped only while that claim still holds it.
    """
    report = batch_report(params.validate.validated_dir, batch_id)
    release_batch(params.ingest, report if report["status"] == "rejected" else None, owner)
    return report


def claim(run: FlowRun, state: StepState) -> StepState | None:
    """Claim the waiting batch (or resume or recover one); None when there is nothing to do.

    Refused, before anything is claimed, while the pipeline differs from its last commit.
    """
    params = run.params
    preflight(params)
    require_committed_pipeline(params)
    result = claim_batch(params.ingest, run.owner_id, time.time(), run.one_process)
    run.seen["claim"] = result
    if isinstance(result, Idle):
        log.info("nothing to process: %s", result.reason)
        return None
    if isinstance(result, Rejected):
        raise BatchRejectedError(
            f"delivery {result.batch_id} refused at the drop folder and moved to "
            f"{result.quarantine}: " + "; ".join(result.reasons)
        )
    if result.recovered_from is not None:
        log.warning("recovered batch %s from %s", result.batch_id, result.recovered_from.describe())
    if result.duplicate:
        log.warning(
            "batch %s repeats content already ingested; nothing new to apply", result.batch_id
        )
    return dict(result.summary())


def repro(run: FlowRun, state: StepState) -> StepState:
    """`dvc repro merge`, after clearing what a killed run may have left half-built and pinning
    drift's reference to the model in production now.

    Refused, like the claim, while the pipeline differs from its last commit.
    """
    params = run.params
    require_committed_pipeline(params)
    clear_leftovers(params)
    from mainstem.flow.drift_pinning import pin_reference  # reads MLflow's store: only here

    pin_reference(params)
    # the stage commands run warm, in children of one host that imports their libraries once
    with (
        stage_host(run.root, DATA_STAGES) as host_env,
        imported_meanwhile(AFTER_REPRO, after=IMPORT_AHEAD_AFTER),
    ):
        run_dvc(run.root, repro_args(), claimed_batch_id(params.ingest), host_env)
    return {}


def push(run: FlowRun, state: StepState) -> StepState:
    """`dvc push` to the workspace's default remote; skipped when none is configured."""
    batch_id = claimed_batch_id(run.params.ingest)
    push_outputs(run.root, lambda args: push_batch(run.root, batch_id))
    return {}


def record_lineage(run: FlowRun, state: StepState) -> StepState:
    """One git commit with `dvc.lock`, the claim ticket and the metrics; and `master_rows`, read
    once here through DVC for the message and handed on to `publish`."""
    params = run.params
    batch_id = claimed_batch_id(params.ingest)
    duplicate = state.get("duplicate")
    rows = master_rows(params)
    commit = record_batch(params, batch_id, None if duplicate is None else bool(duplicate), rows)
    run.seen["commit"] = commit
    return {"commit": commit, "master_rows": rows}


def publish(run: FlowRun, state: StepState) -> StepState:
    """Publish `master_rows` from the DVC metrics file (never by re-reading the master), as
    `record_lineage` read it after `dvc repro`: the batch's lock keeps the file unchanged since."""
    known = state.get("master_rows")
    rows = master_rows(run.params) if known is None else int(known)
    run.seen["master_rows"] = rows
    crashpoints.reach("publish master_rows")
    if run.publish_rows is not None:
        run.publish_rows(rows)
    log.info("master_rows = %d", rows)
    return {"master_rows": rows}


def release(run: FlowRun, state: StepState) -> StepState:
    """Release the drop folder; a BatchRejectedError, after quarantining, if the contract said no.

    The lock is dropped only while this run's claim still holds it; the pipeline page is then
    rebuilt, whatever the outcome.
    """
    params = run.params
    batch_id = claimed_batch_id(params.ingest)
    report = release_claimed(params, batch_id, run.owner)
    run.seen["report"] = report
    refresh_page(params)
    if report["status"] == "rejected":
        where = params.ingest.quarantine_dir / batch_id
        raise BatchRejectedError(
            f"batch {batch_id} rejected by contract {report['contract']} and moved to {where}: "
            + "; ".join(report["reasons"])
        )
    return {k: report[k] for k in ("status", "rows_in", "rows_accepted")}


def refresh_page(params: Params) -> None:
    """Rebuild the workspace's pipeline page (an untracked output); never fails the run."""
    if params.lineage_enabled:
        from mainstem.flow.pipeline_history import refresh_pipeline_page

        refresh_pipeline_page(params.root)


def _give_up(run: FlowRun) -> None:
    """Leave the batch to the next run, which resumes it at once; never hide the first error."""
    try:
        incoming = run.params.ingest.incoming_dir
    except MainstemError:
        return  # no params, so nothing was claimed either
    try:
        if give_up_lock(incoming, run.owner_id):
            log.info("run %s stopped; the next run resumes its batch", run.owner_id)
    except (MainstemError, OSError) as exc:
        log.warning("could not mark the lock of run %s as given up: %s", run.owner_id, exc)


@dataclass(frozen=True)
class BatchRun:
    claim: ClaimResult
    report: dict[str, Any] | None = None
    master_rows: int | None = None
    commit: str | None = None


def process_next_batch(
    root: Path, run_id: str | None = None, publish_rows: Callable[[int], None] | None = None
) -> BatchRun:
    """Claim the waiting batch and carry it through every step of the batch path, here.

    `publish_rows` receives `master_rows` after the lineage commit and before the release; it
    must be idempotent, as a crash after it repeats it. A batch the contract rejected is
    quarantined and reported in the BatchRun, not raised. A run that stops on any other error
    leaves the batch claimed and its lock marked as given up: the next run resumes it at once.
    """
    run_id = run_id or f"cli-{socket.gethostname()}-{os.getpid()}"
    run = FlowRun(Path(root), run_id, publish_rows, one_process=True)
    try:
        # a rejection is raised only once the batch is quarantined; the BatchRun reports it
        with contextlib.suppress(BatchRejectedError):
            run_flow(BATCH_FLOW, run)
    except BaseException:
        _give_up(run)
        raise
    seen = run.seen
    return BatchRun(seen["claim"], seen.get("report"), seen.get("master_rows"), seen.get("commit"))
