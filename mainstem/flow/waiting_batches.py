"""One run's share of the queue: the waiting batches one after another, each with its decision.

In: a FlowRun (the workspace, the id of the run that owns the work, which becomes the lock's owner,
and how to publish `master_rows`), how to make the retrain decision from it, and how many
batches one run may take.
Out: a RunOfBatches (None when nothing could be claimed): each batch taken, with its lineage
commit and `master_rows`; the last retrain decision; whether the policy must run after (a decision
to retrain, or one that could not be made).

Every batch is its own pass over `sequences.BATCH_FLOW` (claim, repro, push, one lineage commit,
publish, release), so the bytes and commits are those of one run per batch. The run stops taking
batches at the bound, when the queue is empty, on a rejected batch (the caller fails the run
with the reason), and when a decision says retrain or could not be made: the training, or the
policy's own retries, then come before the next batch. Airflow's `data_pipeline_dag` runs this as
one task, so a queue pays the scheduler's hops once per run instead of once per batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mainstem.errors import BatchRejectedError, ParamsError
from mainstem.flow.runner import FlowRun, run_flow
from mainstem.flow.sequences import BATCH_FLOW, StepState

log = logging.getLogger(__name__)

BATCHES_PER_RUN_ENV = "MAINSTEM_BATCHES_PER_RUN"
BATCHES_PER_RUN = 10


def batches_per_run() -> int:
    """The bound on batches one run takes: `MAINSTEM_BATCHES_PER_RUN`, else 10; at least 1."""
    raw = os.environ.get(BATCHES_PER_RUN_ENV, "").strip()
    if not raw:
        return BATCHES_PER_RUN
    try:
        return max(1, int(raw))
    except ValueError:
        raise ParamsError(f"{BATCHES_PER_RUN_ENV} must be a whole number, not '{raw}'") from None


@dataclass
class RunOfBatches:
    """What one run did: the batches it took, in order, and what must follow."""

    batches: list[StepState] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    decision_error: str | None = None  # why the decision could not be made here
    rejected: str | None = None  # why the last batch taken was refused

    @property
    def policy_needed(self) -> bool:
        """Whether retrain_policy_dag must run: to train, or to decide with its own retries."""
        return self.decision_error is not None or bool(self.decision and self.decision["retrain"])

    def to_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "names": [batch.get("name") for batch in self.batches],
            "decision": self.decision,
            "decision_error": self.decision_error,
            "rejected": self.rejected,
            "policy_needed": self.policy_needed,
        }


def _one_batch(as_run: FlowRun, start: StepState) -> tuple[StepState | None, str | None]:
    """One pass of the batch path: its state (None when idle), and a rejection's reason."""
    run = FlowRun(Path(as_run.root), as_run.owner_id, as_run.publish_rows)
    try:
        return run_flow(BATCH_FLOW, run, start), None
    except BatchRejectedError as exc:
        claim = run.seen.get("claim")  # Claimed (refused by the contract) or Rejected
        refused = {
            "batch_id": getattr(claim, "batch_id", None),
            "name": getattr(claim, "name", None),
            "status": "rejected",
        }
        return refused, str(exc)


def process_waiting(
    as_run: FlowRun,
    decide: Callable[[int], dict[str, Any]],
    limit: int = BATCHES_PER_RUN,
    start: StepState | None = None,
) -> RunOfBatches | None:
    """Take waiting batches, deciding after each, until a stop (see the module); None if idle.

    `as_run` says the workspace, the lock's owner and how to publish `master_rows`; each batch
    is a fresh run of the batch path with those.
    `decide` gets the batch's `master_rows` and returns the decision as JSON; any error it raises
    is kept in `decision_error` (the policy DAG then decides, and fails loudly if it must).
    """
    done = RunOfBatches()
    while len(done.batches) < limit:
        state, rejected = _one_batch(as_run, dict(start or {}))
        if state is None:
            break
        done.batches.append(state)
        if rejected is not None:
            done.rejected = rejected
            break
        try:
            done.decision = decide(int(state["master_rows"]))
        except Exception as exc:  # any failure: the policy DAG decides again, with retries
            log.exception("the retrain decision failed here; retrain_policy_dag decides instead")
            done.decision_error = f"{type(exc).__name__}: {exc}"
        if done.policy_needed:
            break
    return done if done.batches else None
