"""Issue 14 end to end: the pipeline on the Celery stack, stateless workers, the S3 drop zone.

Three producer processes deliver 20 batches (three of them duplicates, one bad) into the S3 drop
zone on moto_server; `drop_zone_worker_dag` drains it on two Celery workers that share no folder:
each try clones the lineage from a bare git remote and pulls from an S3 DVC remote. The worker
running the task is SIGKILLed in the middle of a batch; the retry, on the other worker, takes the
lease over once it is stale and finishes the batch. Then: one commit per delivery on a linear
history, every good batch merged once (the master is the union of their keys), the bad batch in
quarantine with its report, and a fresh clone rebuilding the master byte-identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from mainstem.cli import main as mainstem
from mainstem.commands import dvc, git
from mainstem.flow.lineage import batch_of_subject
from mainstem.flow.workspace import configure_remote
from mainstem.flow.zone_worker import CACHE_DIR_ENV, GIT_REMOTE_ENV
from mainstem.intake.s3_client import client
from mainstem.local.airflow_api import AirflowApi
from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.local.services import PG_BIN, free_port
from mainstem.local.stack import StackPorts, stack_down, stack_up
from mainstem.local.zone_lineage import publish_lineage, s3_environment
from mainstem.names import ZONE_DAG
from mainstem.params import load_params
from tests.e2e.test_s3_remote import tree_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
ROOT = Path(__file__).resolve().parents[2]
ZONE_BUCKET, DVC_BUCKET = "mainstem-zone", "mainstem-dvc"
STALE_SECONDS = 20  # the lease timeout, short here: `ingest.stale_lock_seconds`
TASK = "drain_drop_zone"
MAINSTEM = str(Path(sys.executable).parent / "mainstem")
GOOD = [BatchSpec(n, first_id=n * 100, rows=4, image_size=16) for n in range(1, 17)]
BAD = BatchSpec(17, first_id=1700, rows=4, image_size=16, drop_column="grade")


def _deliveries(tmp_path: Path) -> list[tuple[str, Path]]:
    """20 deliveries: 16 good batches, 3 repeating the content of batches 1 to 3, 1 bad."""
    made = {spec.name: make_batch(tmp_path / "made" / spec.name, spec) for spec in [*GOOD, BAD]}
    repeats = [(f"again-{n:03d}", made[GOOD[n - 1].name]) for n in (1, 2, 3)]
    return [*made.items(), *repeats]


@pytest.fixture
def remotes(
    workspace: Path, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The workspace's lineage in a bare git remote and its data on S3; workers get only these."""
    zone, store = f"s3://{ZONE_BUCKET}/zone", f"s3://{DVC_BUCKET}/store"
    for name, value in {
        **s3_environment(moto_endpoint, store),
        CACHE_DIR_ENV: "dvc-cache",  # relative: in each worker's own folder
        # a killed worker's task is failed (and retried) after 30 s without a heartbeat
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }.items():
        monkeypatch.setenv(name, value)
    s3 = client()
    for bucket in (ZONE_BUCKET, DVC_BUCKET):
        s3.create_bucket(Bucket=bucket)
    origin = publish_lineage(workspace, zone, STALE_SECONDS, tmp_path / "lineage.git")
    monkeypatch.setenv(GIT_REMOTE_ENV, str(origin))
    return {"zone": zone, "origin": str(origin)}


@pytest.fixture
def celery_stack(workspace: Path, remotes: dict[str, str]) -> Iterator[dict[str, Any]]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}); apt-get install postgresql-15")
    state_dir = Path(tempfile.mkdtemp(prefix="mainstem-zone-"))
    state_dir.chmod(0o755)  # PostgreSQL runs as postgres
    dags = state_dir / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / f"{ZONE_DAG}.py", dags)
    ports = StackPorts(free_port(), free_port(), free_port(), free_port())
    state = stack_up(state_dir, workspace, ports, executor="celery", dags_folder=dags)
    try:
        yield state
    finally:
        stack_down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def _produce(deliveries: list[tuple[str, Path]], zone: str) -> None:
    """Three producer processes, each delivering its share in turn with `mainstem submit`."""
    shares = [deliveries[n::3] for n in range(3)]
    producers = [
        subprocess.Popen(
            [
                "sh",
                "-ec",
                " ; ".join(f"'{MAINSTEM}' submit --to {zone} --name {n} '{p}'" for n, p in share),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for share in shares
    ]
    for producer in producers:
        _out, err = producer.communicate(timeout=600)
        assert producer.returncode == 0, err.decode()


def _batch_subjects(origin: str) -> list[str]:
    subjects = git(["log", "--format=%s"], Path(origin)).stdout.splitlines()
    return [s for s in subjects if batch_of_subject(s)]


def _name(subject: str) -> str:
    """The delivery name in a batch commit's subject: `batch <id> (<name>): ...`."""
    return subject.split(" (", 1)[1].split(")", 1)[0]


def _lease(zone: str) -> tuple[str, dict[str, Any]] | None:
    """The batch name and body of a `_PROCESSING` lease in the zone, if one is held."""
    bucket, prefix = zone.removeprefix("s3://").split("/", 1)
    s3 = client()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    for item in listed:
        if item["Key"].endswith("/_PROCESSING"):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            return item["Key"].split("/")[-2], json.loads(body)
    return None


def _kill_mid_batch(state: dict[str, Any], remotes: dict[str, str]) -> dict[str, Any]:
    """Once a batch is pushed and the next one leased, SIGKILL the worker holding the lease."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        pushed = {_name(s) for s in _batch_subjects(remotes["origin"])}
        held = _lease(remotes["zone"]) if pushed else None
        # a lease on a batch already pushed is that batch's release, not the next batch
        if held is not None and held[0] not in pushed:
            for worker in state["celery"]["workers"]:
                [pid] = [
                    r["pid"] for r in state["processes"] if r["name"] == f"celery {worker['name']}"
                ]
                tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
                if held[1]["pid"] in {p.pid for p in tree}:
                    for process in tree:
                        process.kill()
                    return {"worker": worker["name"], "batch": held[0], "lease": held[1]}
        time.sleep(0.5)
    pytest.fail("no worker ever held a lease after the first batch")


def test_twenty_batches_from_three_producers_through_celery_with_a_worker_killed(
    celery_stack: dict[str, Any],
    workspace: Path,
    remotes: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = celery_stack
    deliveries = _deliveries(tmp_path)
    _produce(deliveries, remotes["zone"])
    mainstem(["status", "--no-airflow", "--json", "--workspace", str(workspace)])
    assert json.loads(capsys.readouterr().out)["drop_zone"]["waiting"] == 20

    airflow = AirflowStack(
        workspace,
        Path(state["airflow_home"]),
        port=int(state["urls"]["airflow"].rsplit(":", 1)[1]),
        owns_processes=False,
    )
    airflow._client = AirflowApi(airflow.url, airflow.password_file(), timeout=120)
    run_id = airflow.trigger(ZONE_DAG, {"lease_wait_seconds": 300})
    killed = _kill_mid_batch(state, remotes)
    run = airflow.wait_for_run(ZONE_DAG, run_id, timeout=1500)
    assert run["state"] == "success", airflow.task_states(ZONE_DAG, run_id)

    # The retry ran on the other worker and finished the killed batch, after its lease expired.
    result = airflow.xcom(ZONE_DAG, run_id, TASK)
    assert result["worker"] != killed["worker"]
    finished = {b["name"]: b for b in result["batches"]}
    assert finished[killed["batch"]]["outcome"] in ("pushed", "already recorded")
    assert (
        finished[killed["batch"]]["claimed_at"] >= killed["lease"]["heartbeat_at"] + STALE_SECONDS
    )

    # One commit per delivery, on a linear history.
    origin = Path(remotes["origin"])
    subjects = _batch_subjects(remotes["origin"])
    names = sorted(_name(s) for s in subjects)
    assert names == sorted(name for name, _ in deliveries)
    assert git(["rev-list", "--merges", "HEAD"], origin).stdout == ""
    assert sum("duplicate delivery" in s for s in subjects) == 3
    assert sum(": rejected;" in s for s in subjects) == 1

    # The bad batch is in quarantine with its report; nothing else is left in the zone.
    s3 = client()
    keys = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=ZONE_BUCKET, Prefix="zone/").get("Contents", [])
    ]
    reports = [k for k in keys if k.endswith("/report.json")]
    assert len(reports) == 1
    assert all("/_quarantine/" in k for k in keys), keys
    report = json.loads(s3.get_object(Bucket=ZONE_BUCKET, Key=reports[0])["Body"].read())
    assert report["status"] == "rejected"

    # A fresh clone: the master is the union of the good batches, and a rebuild gives its bytes.
    clone = tmp_path / "clone"
    git(["clone", "--quiet", str(origin), str(clone)], tmp_path)
    configure_remote(clone)
    dvc(["pull", "--quiet"], clone)
    master = load_params(clone).merge.master_dir
    keys_in_master = pd.read_parquet(master)["item_id"]
    expected = {spec.first_id + n for spec in GOOD for n in range(spec.rows)}
    assert keys_in_master.is_unique
    assert set(keys_in_master) == expected
    pulled = tree_bytes(master)
    mainstem(["upgrade", "--fetch-raw", "--workspace", str(clone)])
    shutil.rmtree(master)
    dvc(["repro", "--force", "merge"], clone)
    assert tree_bytes(master) == pulled
