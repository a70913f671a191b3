"""The retrain decision as a dry run: read what exists, create nothing, print nothing of MLflow's.

In: a workspace's params and the values given from outside (flags or Airflow Variables, each with
where it came from). Out: the RetrainDecision the policy would make now. A workspace's SQLite
store that does not exist yet holds no production model and no run, so the facts are an empty
store's, found without importing MLflow, which would create the file and its tables (seconds,
and a log on stderr). An existing SQLite store is read read-only without MLflow too
(training/sqlite_store.py), as importing MLflow alone takes seconds; a server is read through
MLflow, with its own logging quiet.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mainstem.master.metrics import master_rows
from mainstem.params import Params
from mainstem.training.failures import training_blocker
from mainstem.training.policy import (
    PolicyInputs,
    RetrainDecision,
    Scope,
    StoreFacts,
    look_up,
    make_decision,
    running_cutoff_ms,
    workspace_counts,
    workspace_drift,
    workspace_scope,
)
from mainstem.training.registry import connect, tracking_uri
from mainstem.training.sqlite_store import read_facts, sqlite_path

DVC_ROWS_SOURCE = "DVC metrics"


def read_store(uri: str, scope: Scope, running_started_after_ms: int) -> StoreFacts:
    """What the store at `uri` holds for `scope`, creating nothing.

    A SQLite file that does not exist yet is an empty store (nothing is imported or created); an
    existing one is read read-only with the standard library. Only a server, or a SQLite store of
    another MLflow schema, is read through MLflow, with its logging quiet.
    """
    database = sqlite_path(uri)
    if database is not None:
        if not database.exists():
            return StoreFacts(uri, scope, None, None, None, None)
        facts = read_facts(database, uri, scope, running_started_after_ms)
        if facts is not None:
            return facts
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return look_up(connect(uri), scope, running_started_after_ms)


def dry_run_decision(params: Params, given: PolicyInputs) -> RetrainDecision:
    """The policy's decision, reading the store without creating it.

    With no row count given, the master is counted through DVC, as the DAG's publish step does.
    """
    if given.current_rows is None:
        rows = master_rows(params.root, params.merge.metrics_file)
        given = replace(given, current_rows=rows, rows_source=DVC_ROWS_SOURCE)
    counts = workspace_counts(params, given)
    facts = read_store(tracking_uri(params), workspace_scope(params), running_cutoff_ms(params))
    blocker = training_blocker(params)
    return make_decision(counts, facts, given.training_in_flight, blocker, workspace_drift(params))
