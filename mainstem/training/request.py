"""From a retrain decision to a train request, and from the train stage's metrics to an outcome.

In: a pipeline workspace's params and a RetrainDecision. Out: the train request written to
`train.request_file` (the master's DVC hash from `dvc.lock`, its row count from the DVC metrics,
and the decision), which `dvc repro train` acts on; and a TrainingOutcome read back from the
stage's metrics: the new run, its registered version, and where the production alias points.
`workspace_decision` computes the decision from the workspace's own DVC metrics, as the CLI's
dry run and the demo do. The training path that runs these is `flow.train`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import yaml

from mainstem.durable import read_json, write_json
from mainstem.errors import MainstemError
from mainstem.master.metrics import master_rows as tracked_master_rows
from mainstem.params import Params
from mainstem.training.model import TrainRequest, master_hash
from mainstem.training.policy import PolicyInputs, RetrainDecision, decide

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


def workspace_decision(params: Params, given: PolicyInputs | None = None) -> RetrainDecision:
    """The policy's decision, counting the master through DVC when no row count is given."""
    given = given or PolicyInputs()
    if given.current_rows is None:
        given = replace(given, current_rows=master_rows(params), rows_source=DVC_ROWS_SOURCE)
    return decide(params, given)


def master_rows(params: Params) -> int:
    """`master_rows` as DVC reports it from the tracked metrics file."""
    return tracked_master_rows(params.root, params.merge.metrics_file)
