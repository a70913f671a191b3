"""P16: batches per hour through the Celery stack, against the same drain without Airflow.

In: a Size (`tiny` drains 1 batch each way, `full` 20) and a scratch folder. Out: the wall time
and batches per hour of `drop_zone_worker_dag` draining the S3 drop zone (moto_server on
127.0.0.1) on the Celery stack (`stack up --executor celery`: PostgreSQL, Redis, two Celery
workers), from the trigger to the finished run; the baseline, measured in the same run on the
same lineage, is `zone_worker.drain_zone` called in this process (the same clone, pull and batch
path, no Airflow, no Celery); the target is the ratio of the two throughputs. The stack's start
is reported but not counted. Every batch is a 20-row batch with 20 small images.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.flow.workspace import create_workspace
from mainstem.flow.zone_worker import GIT_REMOTE_ENV, Drain, drain_zone, settings_from_env
from mainstem.intake.s3_client import client
from mainstem.intake.s3_submit import submit_to_s3
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.local.services import free_port
from mainstem.local.zone_lineage import MotoServer, publish_lineage, s3_environment
from mainstem.names import ZONE_DAG

BATCHES = {"tiny": 1, "full": 20}
ROWS = 20
BOUND_RATIO = 0.7  # the Celery path keeps at least 70% of the direct drain's throughput
DAGS = Path(__file__).resolve().parents[1] / "dags"


def _deliver(zone: str, work: Path, numbers: range) -> None:
    for number in numbers:
        spec = BatchSpec(number, number * 1_000, ROWS, image_size=16)
        submit_to_s3([make_batch(work / "made" / spec.name, spec)], zone, spec.name)


def _direct(count: int) -> float:
    start = time.perf_counter()
    done = drain_zone(settings_from_env(), "bench-direct", Drain())
    seconds = time.perf_counter() - start
    if len(done) != count:
        raise RuntimeError(f"the direct drain took {len(done)} batches, not {count}")
    return seconds


def _through_celery(workspace: Path, count: int) -> tuple[float, float]:
    """Seconds to start the stack, and from the trigger to the finished run."""
    from mainstem.local.airflow_api import AirflowApi
    from mainstem.local.airflow_launcher import AirflowStack
    from mainstem.local.stack import StackPorts, stack_down, stack_up

    # not under the scratch folder, whose parents may be private: PostgreSQL runs as postgres
    state_dir = Path(tempfile.mkdtemp(prefix="mainstem-p16-stack-"))
    state_dir.chmod(0o755)
    dags = state_dir / "dags"
    dags.mkdir()
    shutil.copy(DAGS / f"{ZONE_DAG}.py", dags)
    ports = StackPorts(free_port(), free_port(), free_port(), free_port())
    start = time.perf_counter()
    state = stack_up(state_dir, workspace, ports, executor="celery", dags_folder=dags)
    try:
        started = time.perf_counter() - start
        port = int(state["urls"]["airflow"].rsplit(":", 1)[1])
        airflow = AirflowStack(workspace, Path(state["airflow_home"]), port, owns_processes=False)
        airflow._client = AirflowApi(airflow.url, airflow.password_file(), timeout=120)
        start = time.perf_counter()
        run_id = airflow.trigger(ZONE_DAG)
        run = airflow.wait_for_run(ZONE_DAG, run_id, timeout=3600)
        seconds = time.perf_counter() - start
        taken = (airflow.xcom(ZONE_DAG, run_id, "drain_drop_zone") or {}).get("batches", [])
        if run["state"] != "success" or len(taken) != count:
            raise RuntimeError(f"the Celery drain ended {run['state']} with {len(taken)} batches")
        return started, seconds
    finally:
        stack_down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def run(size: Size, work: Path, results: Results) -> None:
    count = BATCHES.get(size.name, BATCHES["full"])
    print(f"P16: {count} batches drained through the Celery stack, and directly")
    base = work / "p16"
    base.mkdir()
    moto = MotoServer(base / "moto.log")
    saved = dict(os.environ)
    try:
        endpoint = moto.start()
        os.environ.update(s3_environment(endpoint, "s3://p16-dvc/store"))
        for bucket in ("p16-zone", "p16-dvc"):
            client().create_bucket(Bucket=bucket)
        workspace = create_workspace(base / "workspace")
        zone = "s3://p16-zone/zone"
        origin = publish_lineage(workspace, zone, 3600, base / "lineage.git")
        os.environ[GIT_REMOTE_ENV] = str(origin)
        _deliver(zone, base, range(1, count + 1))
        direct = _direct(count)
        _deliver(zone, base, range(count + 1, 2 * count + 1))
        started, celery = _through_celery(workspace, count)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        moto.stop()
        shutil.rmtree(base, ignore_errors=True)
    results.measure("P16", f"direct drain of {count} batches (no Airflow)", direct, "s")
    results.measure("P16", f"Celery stack: drain of {count} batches, trigger to end", celery, "s")
    results.measure("P16", "Celery stack: start (not counted)", started, "s")
    results.measure("P16", "direct: batches per hour", 3600 * count / direct, "batches/h")
    results.measure("P16", "Celery stack: batches per hour", 3600 * count / celery, "batches/h")
    results.target(
        Target(
            "P16",
            "batches per hour through the Celery stack ÷ the direct drain",
            direct / celery,
            BOUND_RATIO,
            "at_least",
            f"{count} batches of {ROWS} rows and images each from an S3 drop zone on "
            "moto_server, a bare git lineage remote and an S3 DVC remote; drop_zone_worker_dag "
            "on two Celery workers against zone_worker.drain_zone in-process. One run each.",
        )
    )
