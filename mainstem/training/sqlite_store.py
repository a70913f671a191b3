"""The policy's facts read straight from an MLflow SQLite store, read-only, without MLflow.

In: the path of a `sqlite:///` store, the scope and the training timeout's start bound. Out: the
StoreFacts `policy.look_up` finds through MLflow's client, or None when the store's schema is not
the one of the pinned MLflow (the caller then asks MLflow). Importing MLflow and opening its
SQLAlchemy store takes seconds; this reads the same rows with the standard library in
milliseconds, and opens the file read-only, so it cannot create or migrate anything.

Each query mirrors what MLflow 3.17's SQLAlchemy store runs for the client calls `look_up` makes:
the experiment by name whatever its stage; runs of the experiment that are not deleted, newest
start first (runs without a start last), ties by run id; the registered model's alias, the version
it names unless deleted, and that version's run whatever its stage, with its latest metrics.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from mainstem.errors import RegistryError
from mainstem.training.policy import (
    CompatibleRun,
    Scope,
    StoreFacts,
    compatible_filter,
    compatible_run,
)
from mainstem.training.registry import (
    MASTER_MD5_TAG,
    VERSION_PARAMS,
    Production,
    ProductionVersion,
    active_experiment_id,
    production_of,
    version_run_id,
)

SQLITE_PREFIX = "sqlite:///"
SCHEMA_REVISION = "dc11669786a5"  # the alembic head of MLflow 3.17's tracking schema
DELETED_VERSION_STAGE = "Deleted_Internal"
HAS_PARAM = (
    "EXISTS (SELECT 1 FROM params p WHERE p.run_uuid = r.run_uuid AND p.key = ? AND p.value = ?)"
)
NEWEST_FIRST = "ORDER BY start_time IS NULL, start_time DESC, run_uuid LIMIT 1"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for any other store."""
    return Path(uri[len(SQLITE_PREFIX) :]) if uri.startswith(SQLITE_PREFIX) else None


@contextmanager
def read_only(database: Path, uri: str) -> Iterator[sqlite3.Connection]:
    """The existing database opened read-only; any SQLite failure is a RegistryError naming it."""
    try:
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
            yield db
    except sqlite3.Error as exc:
        raise RegistryError(f"MLflow store {uri}: {exc}") from exc


def _schema_is_known(db: sqlite3.Connection) -> bool:
    try:
        rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.OperationalError:  # no such table: not a store MLflow has set up
        return False
    return rows == [(SCHEMA_REVISION,)]


def _experiment_id(db: sqlite3.Connection, name: str) -> int | None:
    row = db.execute(
        "SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    active_experiment_id(name, row[0], row[1])
    return int(row[0])


def _running_run(db: sqlite3.Connection, experiment_id: int, after_ms: int | None) -> str | None:
    started = "" if after_ms is None else "AND start_time > ?"
    row = db.execute(
        "SELECT run_uuid FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active' "
        f"AND status = 'RUNNING' {started} {NEWEST_FIRST}",
        (experiment_id,) if after_ms is None else (experiment_id, after_ms),
    ).fetchone()
    return None if row is None else str(row[0])


def _run_values(db: sqlite3.Connection, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
    """A run's params and latest metrics (NaN where MLflow stored one); RegistryError if absent."""
    if db.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() is None:
        raise RegistryError(f"run {run_id}, which a registered version names, is not found")
    params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
    metrics = {
        str(key): float("nan") if is_nan else float(value)
        for key, value, is_nan in db.execute(
            "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)
        )
    }
    return params, metrics


def _production(db: sqlite3.Connection, model_name: str, alias: str) -> Production | None:
    """Follow name → alias → version → run, as `registry.resolve_production` does."""
    known = db.execute("SELECT 1 FROM registered_models WHERE name = ?", (model_name,)).fetchone()
    if known is None:
        return None
    pointed = db.execute(
        "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
        (model_name, alias),
    ).fetchone()
    if pointed is None:
        return None
    row = db.execute(
        "SELECT version, run_id FROM model_versions "
        "WHERE name = ? AND version = ? AND current_stage != ?",
        (model_name, pointed[0], DELETED_VERSION_STAGE),
    ).fetchone()
    if row is None:
        raise RegistryError(f"model {model_name} version {pointed[0]} ('{alias}') is not found")
    run_id = version_run_id(model_name, alias, row[0], row[1])
    params, metrics = _run_values(db, run_id)
    found = ProductionVersion(model_name, alias, str(row[0]), run_id)
    return production_of(found, params, metrics, _tag(db, run_id, MASTER_MD5_TAG))


def _tag(db: sqlite3.Connection, run_id: str, key: str) -> str | None:
    row = db.execute(
        "SELECT value FROM tags WHERE run_uuid = ? AND key = ?", (run_id, key)
    ).fetchone()
    return None if row is None else str(row[0])


def _last_compatible(
    db: sqlite3.Connection, experiment_id: int, production: Production
) -> CompatibleRun | None:
    """The newest FINISHED run with production's three versions, and its `master_rows`."""
    matches = [(key, getattr(production, key)) for key in VERSION_PARAMS]
    row = db.execute(
        "SELECT run_uuid FROM runs r WHERE experiment_id = ? AND lifecycle_stage = 'active' "
        f"AND status = 'FINISHED' AND {' AND '.join([HAS_PARAM] * len(matches))} {NEWEST_FIRST}",
        (experiment_id, *(part for match in matches for part in match)),
    ).fetchone()
    if row is None:
        return None
    run_id = str(row[0])
    found = db.execute(
        "SELECT value, is_nan FROM latest_metrics WHERE run_uuid = ? AND key = 'master_rows'",
        (run_id,),
    ).fetchone()
    rows = None if found is None else float("nan") if found[1] else float(found[0])
    return compatible_run(run_id, rows, _tag(db, run_id, MASTER_MD5_TAG))


def read_facts(
    database: Path, uri: str, scope: Scope, running_started_after_ms: int | None = None
) -> StoreFacts | None:
    """What `look_up` would find in the existing SQLite store at `database` (tracking URI `uri`);
    None when its schema is not the pinned MLflow's, so only MLflow can read it.

    Raises PolicyError and RegistryError as `look_up` does, in the same order.
    """
    with read_only(database, uri) as db:
        if not _schema_is_known(db):
            return None
        experiment_id = _experiment_id(db, scope.experiment)
        running = None
        if experiment_id is not None:
            running = _running_run(db, experiment_id, running_started_after_ms)
        production = _production(db, scope.model_name, scope.alias)
        if production is None:
            return StoreFacts(uri, scope, None, None, None, running)
        filter_string = compatible_filter(
            production.feature_version, production.split_version, production.model_version
        )
        compatible = None
        if experiment_id is not None:
            compatible = _last_compatible(db, experiment_id, production)
        return StoreFacts(uri, scope, production, filter_string, compatible, running)
