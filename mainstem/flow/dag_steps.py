"""The body of each data-pipeline task, as plain functions: Airflow calls them, tests call them.

In: the workspace and the id of the run that owns the batch. Out: small JSON-able dicts for XCom,
or a BatchRejectedError error after the batch has been quarantined and the lock released. Every step
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

from mainstem import crashpoints
from mainstem.commands import dvc
from mainstem.errors import BatchRejectedError, LockError, MissingDecisionError
from mainstem.flow import batch as batchflow
from mainstem.intake import lock
from mainstem.intake.dropfolder import Idle, Rejected, claim_batch
from mainstem.intake.preflight import preflight
from mainstem.params import Params, load_params

log = logging.getLogger(__name__)


def own_lock(params: Params, owner_id: str) -> lock.LockOwner:
    """This run's lock as it stands; fail if the run lost it."""
    holder = lock.read_owner(params.ingest.incoming_dir)
    if holder is None or holder.run_id != owner_id:
        held_by = holder.describe() if holder else "nobody"
        raise LockError(f"run {owner_id} no longer holds the batch lock (held by {held_by})")
    return holder


def hold_lock(params: Params, owner_id: str) -> lock.LockOwner:
    """Renew this run's lock with the current process as holder; fail if the run lost it."""
    return lock.heartbeat(params.ingest.incoming_dir, own_lock(params, owner_id), time.time())


def claim(root: Path, owner_id: str) -> dict[str, Any] | None:
    """Claim the waiting batch (or resume/recover one); None when there is nothing to do."""
    params = load_params(root)
    preflight(params)
    result = claim_batch(params.ingest, owner_id, time.time())
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
    return result.summary()


def run_dvc(root: Path, owner_id: str, args: list[str]) -> str:
    """Run one dvc command in the workspace while holding the batch lock; its output."""
    params = load_params(root)
    hold_lock(params, owner_id)
    output = batchflow.run_dvc(root, args, batchflow.claimed_batch_id(params))
    log.info("dvc %s:\n%s", " ".join(args), output.strip())
    return output


def repro(root: Path, owner_id: str) -> str:
    """`dvc repro merge`, after clearing what a killed run may have left half-built."""
    params = load_params(root)
    hold_lock(params, owner_id)
    batchflow.clear_leftovers(params)
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
    """Release the drop folder; raise BatchRejectedError (after quarantining) if the contract said no."""
    params = load_params(root)
    owner = own_lock(params, owner_id)  # the release renews and re-checks it before any change
    batch_id = batchflow.claimed_batch_id(params)
    report = batchflow.release(params, batch_id, owner)
    figures = {k: report[k] for k in ("batch_id", "status", "rows_in", "rows_accepted")}
    if report["status"] == "rejected":
        where = params.ingest.quarantine_dir / batch_id
        raise BatchRejectedError(
            f"batch {batch_id} rejected by contract {report['contract']} and moved to {where}: "
            + "; ".join(report["reasons"])
        )
    return figures


def decide_retrain(
    root: Path, rows_raw: str | None, threshold_raw: str | None, training_in_flight: bool
) -> dict[str, Any]:
    """The retrain decision from the Variables' raw values; logged line by line, as JSON."""
    from mainstem.training.decision_log import record_decision
    from mainstem.training.policy import decide, explain

    params = load_params(root)
    decision = decide(params, rows_raw, threshold_raw, training_in_flight=training_in_flight)
    for line in explain(decision):
        log.info("%s", line)
    log.info("decision: %s (%s)", "RETRAIN" if decision.retrain else "no retrain", decision.reason)
    record_decision(params, decision.to_json(), "retrain_policy_dag")
    return decision.to_json()


def train(root: Path, decision_json: dict[str, Any], requested_by: str) -> dict[str, Any]:
    """Write the train request for the decision (the run's conf) and run `dvc repro train`.

    Both happen in one task, so the request is pinned to the master that is then trained on:
    no batch can be merged in between while the task holds the workspace pool slot.
    """
    from mainstem.training.policy import RetrainDecision
    from mainstem.training.request import request_training, training_outcome

    if not decision_json:
        raise MissingDecisionError(
            "train_pipeline_dag needs the retrain decision as conf {'decision': {...}}; "
            "trigger it from retrain_policy_dag or pass one"
        )
    params = load_params(root)
    request = request_training(params, RetrainDecision.from_json(decision_json), requested_by)
    log.info("train request: %s rows, master %s", request.master_rows, request.master_md5)
    completed = dvc(["repro", "train"], root)
    log.info("dvc repro train:\n%s", completed.stdout.strip())
    outcome = training_outcome(params)
    log.info(
        "model version %s (%s=%.4f); production alias at version %s",
        outcome.model_version,
        outcome.eval_metric,
        outcome.score,
        outcome.production_version,
    )
    return {
        "run_id": outcome.run_id,
        "model_version": outcome.model_version,
        "promoted": outcome.promoted,
        "production_version": outcome.production_version,
        "master_rows": outcome.master_rows,
        "eval_metric": outcome.eval_metric,
        "score": outcome.score,
    }


def push_training(root: Path) -> None:
    if batchflow.remote_configured(root):
        dvc(["push"], root)


def record_training(root: Path) -> dict[str, Any]:
    from mainstem.training.request import commit_training

    return {"commit": commit_training(load_params(root))}
