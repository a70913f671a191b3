"""Four tasks at once, each returning where it ran: the Celery stack e2e test reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, task

PROBES = 4
HOLD_SECONDS = 8  # long enough that the four run side by side, so a worker of two slots is full


@task
def where_am_i() -> dict[str, Any]:
    """The worker's name, this process and its ancestors, the working directory, the host."""
    import os
    import socket
    import time

    import psutil

    time.sleep(HOLD_SECONDS)
    process = psutil.Process()
    return {
        "worker": os.environ.get("MAINSTEM_WORKER_NAME"),
        "pid": process.pid,
        "ancestors": [parent.pid for parent in process.parents()],
        "cwd": os.getcwd(),
        "airflow_home": os.environ.get("AIRFLOW_HOME"),
        "hostname": socket.gethostname(),
    }


@dag(schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False)
def celery_probe_dag() -> None:
    """Runs `where_am_i` four times in parallel; no Variables, nothing written anywhere."""
    for n in range(PROBES):
        where_am_i.override(task_id=f"probe_{n}")()


celery_probe_dag()
