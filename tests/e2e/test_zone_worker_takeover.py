"""A drop-zone worker stopped between its `git push` and its release, on moto_server.

The batch's commit is on the lineage remote but the batch is still leased in the zone. While the
lease is fresh, the next worker takes the batches behind it; once it is stale, a worker whose
clone came after those later commits takes it over, finds it recorded, and releases it: one
commit per delivery, nothing left in the zone.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from mainstem.commands import git
from mainstem.flow import zone_worker
from mainstem.flow.lineage import batch_of_subject
from mainstem.flow.worker import WorkerSettings, prepare
from mainstem.flow.zone_worker import ZoneBatch, process_one
from mainstem.intake.s3_claim import read_held, renew
from mainstem.intake.s3_client import client
from mainstem.intake.s3_submit import submit_to_s3
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.local.zone_lineage import publish_lineage, s3_environment
from mainstem.params import load_params

pytestmark = pytest.mark.e2e
ZONE_BUCKET, DVC_BUCKET = "mainstem-takeover-zone", "mainstem-takeover-dvc"
STALE_SECONDS = 20


def _zone_keys(zone: str) -> list[str]:
    bucket, prefix = zone.removeprefix("s3://").split("/", 1)
    listed = client().list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return [item["Key"] for item in listed.get("Contents", [])]


def _batch_names(origin: Path) -> list[str]:
    subjects = git(["log", "--reverse", "--format=%s"], origin).stdout.splitlines()
    return [s.split(" (", 1)[1].split(")", 1)[0] for s in subjects if batch_of_subject(s)]


def _heartbeat(root: Path) -> float:
    """Renew the lease the worker at `root` holds, as its next heartbeat would; when."""
    params = load_params(root).ingest
    held = read_held(params.incoming_dir)
    assert held is not None
    now = time.time()
    renew(params, replace(held.owner, heartbeat_at=now))
    return now


def test_a_batch_pushed_but_not_released_is_released_by_a_later_clone(
    workspace: Path, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone, store = f"s3://{ZONE_BUCKET}/zone", f"s3://{DVC_BUCKET}/store"
    for name, value in s3_environment(moto_endpoint, store).items():
        monkeypatch.setenv(name, value)
    for bucket in (ZONE_BUCKET, DVC_BUCKET):
        client().create_bucket(Bucket=bucket)
    origin = publish_lineage(workspace, zone, STALE_SECONDS, tmp_path / "lineage.git")
    settings = WorkerSettings(str(origin))
    for number, name in enumerate(("first", "second", "third"), start=1):
        batch = make_batch(
            tmp_path / "made" / name, BatchSpec(number, number * 100, rows=4, image_size=16)
        )
        submit_to_s3([batch], zone, name, moto_endpoint)
        time.sleep(1.1)  # `_READY` times order the queue

    # Worker 1 stops right after its git push: the first batch is recorded, still leased.
    with monkeypatch.context() as stopped:
        stopped.setattr(zone_worker, "_AFTER_PUSH", ())
        stopped_worker = prepare(settings, tmp_path / "w1")
        first = process_one(stopped_worker, "run-1")
    assert isinstance(first, ZoneBatch)
    assert first.outcome == "pushed"
    assert any(key.endswith("first/_PROCESSING") for key in _zone_keys(zone))

    # Worker 2 takes the second batch while the first one's lease is fresh (its last heartbeat
    # given just before, as a worker slowed down rather than stopped would).
    next_worker = prepare(settings, tmp_path / "w2")
    held_at = _heartbeat(stopped_worker.root)
    second = process_one(next_worker, "run-2")
    assert isinstance(second, ZoneBatch)
    assert second.name == "second"

    # Worker 3 clones after the second batch's commit, so its pull lacks the first's report.
    later = prepare(settings, tmp_path / "w3")
    time.sleep(max(0.0, held_at + STALE_SECONDS + 1 - time.time()))
    taken_over = process_one(later, "run-3")
    assert isinstance(taken_over, ZoneBatch)
    assert (taken_over.name, taken_over.outcome) == ("first", "already recorded")
    assert taken_over.commit == first.commit
    third = process_one(later, "run-3")
    assert isinstance(third, ZoneBatch)
    assert third.name == "third"

    assert _batch_names(origin) == ["first", "second", "third"]
    assert _zone_keys(zone) == []
