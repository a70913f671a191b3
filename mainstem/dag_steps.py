"""The body of each data-pipeline task, as plain functions: Airflow calls them, tests call them.

In: the workspace and the id of the run that owns the batch. Out: small JSON-able dicts for XCom,
or a BatchRejected error after the batch has been quarantined and the lock released. Every step
that acts on the claimed batch first proves the run still holds the `_PROCESSING` lock and renews
it with this process as the live holder, so a long `dvc repro` is never mistaken for a dead owner;
a run that lost its lock (another claimant recovered it) stops instead of writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mainstem import batchflow, crashpoints, lock
from mainstem.commands import dvc
from mainstem.dropfolder import Idle, Rejected, claim_batch
from mainstem.errors import LockError, MainstemError
from mainstem.params import Params, load_params

log = logging.getLogger(__name__)


class BatchRejected(MainstemError):
    """The batch was refused (at the drop folder or by the contract) and quarantined."""


def hold_lock(params: Params, owner_id: str) -> lock.LockOwner:
    """Renew this run's lock with the current process as holder; fail if the run lost it."""
    holder = lock.read_owner(params.ingest.incoming_dir)
    if holder is None or holder.run_id != owner_id:
        held_by = holder.describe() if holder else "nobody"
        raise LockError(f"run {owner_id} no longer holds the batch lock (held by {held_by})")
    return lock.heartbeat(params.ingest.incoming_dir, holder, time.time())


def claim(root: Path, owner_id: str) -> dict[str, Any] | None:
    """Claim the waiting batch (or resume/recover one); None when there is nothing to do."""
    params = load_params(root)
    result = claim_batch(params.ingest, owner_id, time.time())
    if isinstance(result, Idle):
        log.info("nothing to process: %s", result.reason)
        return None
    if isinstance(result, Rejected):
        raise BatchRejected(
            f"delivery {result.batch_id} refused at the drop folder and moved to "
            f"{result.quarantine}: " + "; ".join(result.reasons)
        )
    if result.recovered_from is not None:
        log.warning("recovered batch %s from %s", result.batch_id, result.recovered_from.describe())
    if result.duplicate:
        log.warning(
            "batch %s repeats content already ingested; nothing new to apply", result.batch_id
        )
    return result.summary()


def run_dvc(root: Path, owner_id: str, args: list[str]) -> str:
    """Run one dvc command in the workspace while holding the batch lock; its output."""
    hold_lock(load_params(root), owner_id)
    crashpoints.reach(f"dvc {args[0]}")
    completed = dvc(args, root)
    log.info("dvc %s:\n%s", " ".join(args), completed.stdout.strip())
    return completed.stdout


def repro(root: Path, owner_id: str) -> str:
    return run_dvc(root, owner_id, batchflow.repro_args())


def push(root: Path, owner_id: str) -> str:
    """`dvc push` to the workspace's default remote; skipped when none is configured."""
    if not batchflow.remote_configured(root):
        log.warning("no DVC remote configured in %s; nothing pushed", root)
        return ""
    return run_dvc(root, owner_id, ["push"])


def record_lineage(root: Path, owner_id: str, duplicate: bool) -> dict[str, Any]:
    params = load_params(root)
    hold_lock(params, owner_id)
    batch_id = batchflow.claimed_batch_id(params)
    commit = batchflow.record_lineage(params, batch_id, duplicate)
    return {"batch_id": batch_id, "commit": commit}


def publish(root: Path, set_variable: Callable[[str, str], None]) -> int:
    """Set CURRENT_MASTER_ROWS from the DVC metrics file (never by re-reading the master)."""
    rows = batchflow.master_rows(load_params(root))
    crashpoints.reach("publish CURRENT_MASTER_ROWS")
    set_variable("CURRENT_MASTER_ROWS", str(rows))
    log.info("CURRENT_MASTER_ROWS = %d", rows)
    return rows


def release(root: Path, owner_id: str) -> dict[str, Any]:
    """Release the drop folder; raise BatchRejected (after quarantining) if the contract said no."""
    params = load_params(root)
    hold_lock(params, owner_id)
    batch_id = batchflow.claimed_batch_id(params)
    report = batchflow.release(params, batch_id)
    figures = {k: report[k] for k in ("batch_id", "status", "rows_in", "rows_accepted")}
    if report["status"] == "rejected":
        where = params.ingest.quarantine_dir / batch_id
        raise BatchRejected(
            f"batch {batch_id} rejected by contract {report['contract']} and moved to {where}: "
            + "; ".join(report["reasons"])
        )
    return figures
