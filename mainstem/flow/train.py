"""The steps of the training path: train → push → record_lineage.

In: a FlowRun and a state holding the retrain decision (`decision`, as JSON) and who asked
(`requested_by`). Out, step by step: the train request pinned to the master as it is now and `dvc
repro train` run on it (one step, so no batch can be merged in between while it holds the workspace
pool slot), `dvc push`, and one lineage commit, after which the pipeline page is rebuilt.
`sequences.TRAINING_FLOW` orders them; `train_from_decision` runs them all in this process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mainstem.commands import dvc
from mainstem.durable import read_json
from mainstem.errors import CommandError, MissingDecisionError
from mainstem.flow.batch import lineage_paths, refresh_page
from mainstem.flow.lineage import record
from mainstem.flow.pipeline import require_committed_pipeline
from mainstem.flow.runner import FlowRun, push_outputs, run_flow
from mainstem.flow.sequences import TRAINING_FLOW, StepState
from mainstem.params import Params
from mainstem.training.failures import clear_failure, declared_contract, record_failure
from mainstem.training.policy import RetrainDecision
from mainstem.training.request import TrainingOutcome, request_training, training_outcome

log = logging.getLogger(__name__)


def commit_training(params: Params) -> str | None:
    """One lineage commit for the training just run: dvc.lock, the request, the metrics."""
    if not params.lineage_enabled:
        log.info("lineage recording is off (lineage.enabled: false)")
        return None
    outcome = training_outcome(params)
    request = read_json(params.train.request_file)
    alias = params.train.production_alias
    where = "moves to it" if outcome.promoted else f"stays at version {outcome.production_version}"
    message = (
        f"train: {params.train.model_name} version {outcome.model_version} "
        f"({outcome.eval_metric}={outcome.score:.4f}) on {outcome.master_rows} rows; "
        f"'{alias}' {where}\n\n"
        f"run: {outcome.run_id}\n"
        f"requested by {request.get('requested_by')}: {request.get('reason')}\n"
    )
    return record(params.root, lineage_paths(params), message)


def train(run: FlowRun, state: StepState) -> StepState:
    """Write the train request for the decision and run `dvc repro train` on it.

    Refused while the pipeline differs from its last commit, as a batch is.
    """
    require_committed_pipeline(run.params)
    decision_json = state.get("decision")
    if not decision_json:
        raise MissingDecisionError(
            "train_pipeline_dag needs the retrain decision as conf {'decision': {...}}; "
            "trigger it from retrain_policy_dag or pass one"
        )
    params = run.params
    decision = RetrainDecision.from_json(decision_json)
    declared_contract(params)  # a declaration that cannot work fails here, before any request
    requested_by = str(state.get("requested_by") or run.owner_id)
    request = request_training(params, decision, requested_by)
    log.info("train request: %s rows, master %s", request.master_rows, request.master_md5)
    try:
        completed = dvc(["repro", "train"], run.root)
    except CommandError as exc:
        # remembered, so the policy does not start this same failing training after each batch
        record_failure(params, request.master_md5, str(exc))
        raise
    clear_failure(params)
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


def push(run: FlowRun, state: StepState) -> StepState:
    """`dvc push` of the model and the request; skipped when no remote is configured."""
    push_outputs(run.root)
    return {}


def record_lineage(run: FlowRun, state: StepState) -> StepState:
    """One lineage commit for the training, then the pipeline page rebuilt (never failing)."""
    params = run.params
    commit = commit_training(params)
    run.seen["commit"] = commit
    refresh_page(params)
    return {"commit": commit}


def train_from_decision(
    root: Path, decision: RetrainDecision, requested_by: str
) -> TrainingOutcome:
    """Every step of the training path for `decision`, in this process."""
    run = FlowRun(Path(root), requested_by)
    run_flow(TRAINING_FLOW, run, {"decision": decision.to_json(), "requested_by": requested_by})
    return training_outcome(run.params, run.seen.get("commit"))
