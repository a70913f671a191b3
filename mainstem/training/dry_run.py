"""The retrain decision as a dry run: read what exists, create nothing, print nothing of MLflow's.

In: a workspace's params and the values given from outside (flags or Airflow Variables, each with
where it came from). Out: the RetrainDecision the policy would make now. A workspace's SQLite
store that does not exist yet holds no production model and no run, so the facts are an empty
store's, found without importing MLflow, which would create the file and its tables (seconds,
and a log on stderr). An existing store, or a server, is read with MLflow's own logging quiet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from mainstem.metrics import read_metric
from mainstem.params import Params
from mainstem.training.failures import training_blocker
from mainstem.training.policy import (
    PolicyInputs,
    RetrainDecision,
    Scope,
    StoreFacts,
    look_up,
    make_decision,
    parse_counts,
    workspace_scope,
)
from mainstem.training.registry import connect, tracking_uri

SQLITE_PREFIX = "sqlite:///"
DVC_ROWS_SOURCE = "DVC metrics"


def absent_sqlite_store(uri: str) -> Path | None:
    """The file of a `sqlite:///` store when it does not exist yet; None otherwise."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    database = Path(uri[len(SQLITE_PREFIX) :])
    return None if database.exists() else database


def read_store(uri: str, scope: Scope, running_started_after_ms: int) -> StoreFacts:
    """What the store at `uri` holds for `scope`: an empty store's facts when it is a SQLite file
    that does not exist yet (nothing is imported or created), else what MLflow finds there."""
    if absent_sqlite_store(uri) is not None:
        return StoreFacts(uri, scope, None, None, None, None)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return look_up(connect(uri), scope, running_started_after_ms)


def dry_run_decision(params: Params, given: PolicyInputs) -> RetrainDecision:
    """The policy's decision, reading the store without creating it.

    With no row count given, the master is counted through DVC, as the DAG's publish step does.
    """
    if given.current_rows is None:
        metrics = params.merge.metrics_file.relative_to(params.root).as_posix()
        rows = read_metric(params.root, metrics, "master_rows")
        given = replace(given, current_rows=rows, rows_source=DVC_ROWS_SOURCE)
    counts = parse_counts(
        given.current_rows,
        given.threshold,
        params.retrain_threshold_rows,
        given.rows_source,
        given.threshold_source,
    )
    started_after = time.time() - params.retrain_training_timeout_seconds
    facts = read_store(tracking_uri(params), workspace_scope(params), int(started_after * 1000))
    return make_decision(counts, facts, given.training_in_flight, training_blocker(params))
