"""Airflow's components, as the launcher starts them, wait out a long SQLite write lock.

Python's SQLite driver gives up after 5 s, and on two busy cores a `PATCH` of a Variable failed
with HTTP 500 ("database is locked"). Here another connection holds the write lock for 8 s while
Airflow's own engine, configured from the launcher's environment, writes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mainstem.local import airflow_sqlite
from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.services import free_port

WRITER = """
import time
from airflow import settings
with settings.engine.connect() as connection:
    connection.exec_driver_sql("SELECT 1")
print("ready", flush=True)
started = time.monotonic()
with settings.engine.begin() as connection:
    connection.exec_driver_sql("INSERT INTO waited VALUES (1)")
print(f"wrote after {time.monotonic() - started:.1f} s", flush=True)
"""


def test_a_write_waits_for_a_lock_held_longer_than_five_seconds(
    workspace: Path, tmp_path: Path
) -> None:
    database = tmp_path / "airflow.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as Airflow sets it on every connection
    holder.execute("CREATE TABLE waited (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, taken before Airflow's engine asks
    holder.execute("INSERT INTO waited VALUES (0)")
    url = f"sqlite:///{database}"
    env = AirflowStack(workspace, tmp_path / "airflow", port=free_port(), database_url=url).env()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        if writer.stdout.readline().decode().strip() != "ready":
            _out, err = writer.communicate(timeout=120)
            raise AssertionError(f"Airflow's engine did not start:\n{err.decode()[-2000:]}")
        time.sleep(8.0)
        holder.execute("COMMIT")
        out, err = writer.communicate(timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        holder.close()
    assert writer.returncode == 0, err.decode()[-2000:]
    waited = float(out.decode().split("wrote after")[1].split()[0])
    assert waited > 5.0  # it did wait, past the driver's default
    with sqlite3.connect(database) as check:
        assert check.execute("SELECT COUNT(*) FROM waited").fetchone() == (2,)


def test_only_a_sqlite_database_gets_the_driver_argument() -> None:
    assert airflow_sqlite.settings(None)  # Airflow's default database is SQLite
    assert airflow_sqlite.settings("sqlite:////srv/airflow.db")
    # psycopg2 knows no `timeout` and would refuse to connect
    assert airflow_sqlite.settings("postgresql+psycopg2://airflow@127.0.0.1:5432/airflow") == {}
