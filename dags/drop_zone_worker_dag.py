"""drop_zone_worker_dag: wiring only; the work is `mainstem.flow.zone_worker.drain_zone`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from mainstem.names import WORKSPACE_POOL, ZONE_DAG


@dag(
    dag_id=ZONE_DAG,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    params={
        "git_remote": Param("", type="string", description="lineage remote; '' = env"),
        "max_batches": Param(0, type="integer", minimum=0, description="0 = until none waits"),
        "lease_wait_seconds": Param(0, type="integer", minimum=0),
    },
    tags=["mainstem"],
)
def drop_zone_worker_dag() -> None:
    """
    ### Drain the S3 drop zone on a stateless worker (Celery, pods)

    One task, `drain_drop_zone`, on whichever worker takes it: clone the lineage from its git
    remote (`git_remote`, else `MAINSTEM_GIT_REMOTE` in the worker's environment) into a
    scratch folder, `dvc pull` the outputs the batch path extends (DVC remote from
    `MAINSTEM_REMOTE_URL`, a kept cache from `MAINSTEM_WORKER_CACHE_DIR`), then take the
    oldest ready batch of the lineage's S3 drop zone (`ingest.incoming_dir: s3://...`), run
    `dvc repro merge`, `dvc push`, commit, **`git push`** (the commit point) and only then
    clear the batch from S3; again until none is ready or `max_batches` are done.

    * Nothing is shared with the scheduler or other workers but S3, the git remote and the
      DVC remote. The `mainstem_workspace` pool and `max_active_runs=1` keep one writer.
    * **Variables:** none read or written (`CURRENT_MASTER_ROWS` belongs to a workspace).
    * **On a killed worker** the batch keeps its lease; the retry (another worker) takes it
      over once it is stale (`ingest.stale_lock_seconds`), waiting up to
      `lease_wait_seconds` for that, and processes it once.
    * **On a rejected batch** it goes to the zone's `_quarantine/<batch id>/` with its report
      and the drain goes on; the task's result lists it.
    """

    @task(pool=WORKSPACE_POOL)
    def drain_drop_zone(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk import get_current_context

        from mainstem.flow.zone_worker import Drain, drain_zone_task

        context = get_current_context()
        owner = f"{context['dag'].dag_id}/{context['run_id']}/try-{context['ti'].try_number}"
        given = params or {}
        limits = Drain(int(given["max_batches"]), float(given["lease_wait_seconds"]))
        return drain_zone_task(str(given["git_remote"]), owner, limits)

    drain_drop_zone()


drop_zone_worker_dag()
