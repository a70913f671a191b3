"""Closing the loop: from a retrain decision to a trained, registered model.

In: a pipeline workspace and a RetrainDecision. Out: the train request written to
`train.request_file` (the master's DVC hash from `dvc.lock`, its row count from the DVC metrics,
and the decision), `dvc repro train` run, the result pushed and committed like a batch, and a
TrainingOutcome: the new run, its registered version, and where the production alias points now.
`train_from_decision` runs the steps in one process (the demo, local use); `train_pipeline_dag`
runs them as tasks: `request_training`, `dvc repro train`, `dvc push`, `commit_training`.
`workspace_decision` computes the decision from the workspace's own DVC metrics, as the CLI's
dry run and the demo do.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from mainstem.commands import dvc
from mainstem.durable import read_json, write_json
from mainstem.errors import MainstemError
from mainstem.flow.batch import lineage_paths, master_rows, remote_configured
from mainstem.flow.lineage import record
from mainstem.params import Params, load_params
from mainstem.training.model import TrainRequest, master_hash
from mainstem.training.policy import THRESHOLD_VARIABLE, RetrainDecision, decide

log = logging.getLogger(__name__)
DVC_ROWS_SOURCE = "DVC metrics"


@dataclass(frozen=True)
class TrainingOutcome:
    """What one requested training produced."""

    run_id: str
    model_version: str
    promoted: bool
    production_version: str
    eval_metric: str
    score: float
    master_rows: int
    commit: str | None


def build_request(
    decision: RetrainDecision, master_md5: str, rows: int, requested_by: str, requested_at: str
) -> TrainRequest:
    """The request for a decision that says retrain, pinned to the master as it is now.

    The master may have moved on since the decision (a batch merged while the training waited):
    the request pins the current master, and the decision inside it still says what it counted.
    """
    if not decision.retrain:
        raise MainstemError(f"the retrain decision says no ({decision.reason}); nothing to request")
    if decision.current_master_rows != rows:
        log.info(
            "the decision counted %s master rows (%s); training on the %d rows there are now",
            decision.current_master_rows,
            decision.rows_source,
            rows,
        )
    return TrainRequest(
        requested_at=requested_at,
        requested_by=requested_by,
        master_md5=master_md5,
        master_rows=rows,
        reason=decision.reason,
        decision=decision.to_json(),
    )


def tracked_master_md5(params: Params) -> str:
    lock = yaml.safe_load((params.root / "dvc.lock").read_text(encoding="utf-8"))
    return master_hash(lock, params.merge.master_dir.relative_to(params.root).as_posix())


def request_training(params: Params, decision: RetrainDecision, requested_by: str) -> TrainRequest:
    """Write the train request for `decision`; `dvc repro train` then acts on it."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    request = build_request(
        decision, tracked_master_md5(params), master_rows(params), requested_by, now
    )
    write_json(params.train.request_file, request.to_json())
    return request


def training_outcome(params: Params, commit: str | None = None) -> TrainingOutcome:
    """What the last `dvc repro train` produced, read from its metrics file."""
    metrics = read_json(params.train.metrics_file)
    if not metrics.get("trained"):
        raise MainstemError(f"{params.train.metrics_file} records no training; nothing to report")
    metric = params.train.eval_metric
    return TrainingOutcome(
        run_id=str(metrics["run_id"]),
        model_version=str(metrics["model_version"]),
        promoted=bool(metrics["promoted"]),
        production_version=str(metrics["production_version"]),
        eval_metric=metric,
        score=float(metrics[metric]),
        master_rows=int(metrics["master_rows"]),
        commit=commit,
    )


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


def train_from_decision(
    root: Path, decision: RetrainDecision, requested_by: str
) -> TrainingOutcome:
    """Request training for `decision`, run the train stage, push and commit the result."""
    params = load_params(root)
    request_training(params, decision, requested_by)
    dvc(["repro", "train"], root)
    if remote_configured(root):
        dvc(["push"], root, show_progress=sys.stderr.isatty())
    return training_outcome(params, commit_training(params))


def workspace_decision(
    params: Params,
    current_rows: object = None,
    threshold_raw: object = None,
    *,
    rows_source: str | None = None,
    threshold_source: str = THRESHOLD_VARIABLE,
    training_in_flight: bool = False,
) -> RetrainDecision:
    """The policy's decision, counting the master through DVC when no row count is given."""
    if current_rows is None:
        current_rows, rows_source = master_rows(params), DVC_ROWS_SOURCE
    return decide(
        params,
        current_rows,
        threshold_raw,
        rows_source=rows_source or "given",
        threshold_source=threshold_source,
        training_in_flight=training_in_flight,
    )
