"""How long Airflow's components wait for SQLite's write lock, named in `[database]` by import path.

SQLite lets one writer in at a time, and Python's driver gives up after 5 s. On two busy cores the
scheduler, the api-server and the tasks' heartbeats can hold it that long, and a `PATCH` of a
Variable then failed with HTTP 500 ("database is locked"). Airflow reads these by import path
(`sql_alchemy_connect_args`, `sql_alchemy_connect_args_async`), so they live in a module of their
own that imports nothing. Only a SQLite database gets them: psycopg2 knows no `timeout`.
"""

from __future__ import annotations

from typing import Any

LOCK_WAIT_SECONDS = 60.0

# Two dicts, not one: Airflow adds `check_same_thread` to the sync engine's in place.
CONNECT_ARGS: dict[str, Any] = {"timeout": LOCK_WAIT_SECONDS}
CONNECT_ARGS_ASYNC: dict[str, Any] = {"timeout": LOCK_WAIT_SECONDS}


def settings(database_url: str | None) -> dict[str, str]:
    """The Airflow settings that give a SQLite metadata database (the default) the longer wait."""
    if database_url and not database_url.startswith("sqlite"):
        return {}
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.CONNECT_ARGS_ASYNC",
    }
