"""The drop zone on S3 (`ingest.incoming_dir: s3://...`) against moto_server on 127.0.0.1.

Producers deliver with conditional writes, claimants in separate processes race for one batch,
a stale lease is taken over and its old holder stops, quarantine can be repeated, and a batch
fetched from S3 gets the same content-hash id as through the local drop folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mainstem import crashpoints
from mainstem.errors import (
    DropZoneAccessDeniedError,
    DropZoneBucketMissingError,
    DropZoneUnreachableError,
    LockError,
)
from mainstem.flow.batch import process_next_batch
from mainstem.intake import lock, s3_dropzone
from mainstem.intake.delivery import scan
from mainstem.intake.dropfolder import Claimed, Idle, Rejected, claim_batch, release_batch
from mainstem.intake.s3_claim import read_held, renew
from mainstem.intake.s3_client import client
from mainstem.intake.s3_layout import parse_drop_zone
from mainstem.intake.s3_submit import submit_to_s3
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.local.services import free_port
from mainstem.params import IngestParams
from tests.conftest import ROOT, ingest_params

pytestmark = pytest.mark.e2e
BUCKET = "mainstem-drop"
MAINSTEM = str(Path(sys.executable).parent / "mainstem")


@pytest.fixture
def zone_url(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix in the bucket, with the AWS environment a worker would have; its URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3 = client()
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/drop-{os.urandom(4).hex()}"


def s3_params(root: Path, url: str, **timing: float) -> IngestParams:
    """A worker's ingest params: its own staging folder and stores, the shared drop zone."""
    return replace(ingest_params(root, **timing), drop_zone_url=url)


def keys_under(url: str) -> list[str]:
    zone = parse_drop_zone(url)
    pages = client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=zone.prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def small_batch(folder: Path, number: int = 1) -> Path:
    return make_batch(folder, BatchSpec(number, first_id=number * 100, rows=6, image_size=16))


# What a claimant process runs: the ingest_params folders, without importing the test suite.
PRELUDE = """
import json, sys, time
from pathlib import Path
from mainstem.intake.dropfolder import Claimed, claim_batch, release_batch
from mainstem.params import IngestParams
root, url = Path(sys.argv[1]), sys.argv[2]
params = IngestParams(
    root / "incoming", root / "claimed_batch.json", root / "raw", root / "quarantine",
    3600, 0, 600, drop_zone_url=url,
)
"""
CLAIMANT = (
    PRELUDE
    + """
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
result = claim_batch(params, f"worker-{root.name}", time.time())
print(json.dumps({"kind": type(result).__name__, "batch_id": getattr(result, "batch_id", None)}))
"""
)


def test_of_several_claimant_processes_exactly_one_claims_the_batch(
    zone_url: str, tmp_path: Path
) -> None:
    submit_to_s3([small_batch(tmp_path / "batch")], zone_url, "race")
    start = time.time() + 3  # every process has imported everything by then
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMANT, str(tmp_path / f"w{n}"), zone_url, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(5)
    ]
    results = [json.loads(w.communicate(timeout=120)[0].strip().splitlines()[-1]) for w in workers]
    assert sorted(r["kind"] for r in results) == ["Claimed"] + ["Idle"] * 4
    (winner,) = [n for n, r in enumerate(results) if r["kind"] == "Claimed"]
    assert read_held(tmp_path / f"w{winner}" / "incoming") is not None
    losers = [n for n in range(5) if n != winner]
    assert all(not (tmp_path / f"w{n}" / "incoming" / "_READY").exists() for n in losers)


def test_a_stale_lease_is_taken_over_and_the_old_holder_stops(
    zone_url: str, tmp_path: Path
) -> None:
    submit_to_s3([small_batch(tmp_path / "batch")], zone_url, "slow")
    old = s3_params(tmp_path / "old", zone_url, stale=60)
    new = s3_params(tmp_path / "new", zone_url, stale=60)
    now = time.time()
    first = claim_batch(old, "run-old", now)
    assert isinstance(first, Claimed)
    assert isinstance(claim_batch(new, "run-new", now + 1), Idle)  # live: wait

    recovered = claim_batch(new, "run-new", now + 120)  # silent for longer than 60 s
    assert isinstance(recovered, Claimed)
    assert recovered.batch_id == first.batch_id

    with pytest.raises(LockError, match="lost the lease"):
        renew(old, first.owner)
    with pytest.raises(LockError):
        release_batch(old, None, first.owner)
    assert any(k.endswith("/slow/_READY") for k in keys_under(zone_url))  # nothing cleared
    lock.give_up(old.incoming_dir, "run-old")  # what the runner does when a step fails
    again = claim_batch(old, "run-old-next", now + 130)
    assert isinstance(again, Idle)
    assert "taken over by another claimant" in again.reason
    assert read_held(old.incoming_dir) is None
    assert not (old.incoming_dir / "_PROCESSING").exists()

    release_batch(new, None, recovered.owner)
    assert keys_under(zone_url) == []


HOLDER = (
    PRELUDE
    + """
result = claim_batch(params, "run-killed", time.time(), one_process=True)
print(json.dumps({"batch_id": result.batch_id}), flush=True)
time.sleep(600)
"""
)


def test_a_lease_whose_holder_was_killed_is_taken_over_at_once(
    zone_url: str, tmp_path: Path
) -> None:
    submit_to_s3([small_batch(tmp_path / "batch")], zone_url, "killed")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "a"), zone_url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    claimed = json.loads(holder.stdout.readline())
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)

    params = s3_params(tmp_path / "b", zone_url)  # stale only after an hour of silence
    recovered = claim_batch(params, "run-survivor", time.time())

    assert isinstance(recovered, Claimed)
    assert recovered.batch_id == claimed["batch_id"]
    release_batch(params, None, recovered.owner)
    assert keys_under(zone_url) == []


WORKER = (
    PRELUDE
    + """
result = claim_batch(params, "run-1", time.time(), one_process=True)
if isinstance(result, Claimed):
    release_batch(params, None, result.owner)
"""
)


def _worker_run(root: Path, url: str, env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(root), url], cwd=ROOT, env={**os.environ, **env}
    )
    return done.returncode


def test_a_worker_killed_at_any_s3_write_point_leaves_a_batch_the_next_claim_finishes(
    zone_url: str, tmp_path: Path
) -> None:
    folder = make_batch(tmp_path / "batch", BatchSpec(1, first_id=1, rows=2, image_size=8))
    trace = tmp_path / "trace.txt"
    submit_to_s3([folder], zone_url, "clean")
    counter = {crashpoints.COUNTER: str(tmp_path / "count"), crashpoints.TRACE: str(trace)}
    assert _worker_run(tmp_path / "traced", zone_url, counter) == 0
    points = crashpoints.read_trace(trace)
    assert {"s3 write lease", "s3 fetch object", "s3 delete object", "s3 release lease"} <= set(
        points
    )
    expected = ingest_params(tmp_path / "traced").claimed_batch.read_text(encoding="utf-8")
    # After the lease is gone the local drop folder's own release runs, which its crash tests
    # cover; there a real run resumes from the raw store, which this test does not fill.
    s3_points = points.index("s3 release lease") + 1
    for n in range(1, s3_points + 1):
        zone = f"{zone_url}-{n}"
        root = tmp_path / f"crash-{n}"
        submit_to_s3([folder], zone, "clean")
        env = {crashpoints.COUNTER: str(root) + ".count", crashpoints.CRASH_AT: str(n)}
        assert _worker_run(root, zone, env) == -signal.SIGKILL, points[n - 1]

        params = s3_params(root, zone)
        for _attempt in range(3):
            result = claim_batch(params, "run-2", time.time(), one_process=True)
            if not isinstance(result, Claimed):
                break
            assert params.claimed_batch.read_text(encoding="utf-8") == expected
            release_batch(params, None, result.owner)
        assert keys_under(zone) == [], points[n - 1]
        assert read_held(params.incoming_dir) is None
        assert scan(params.incoming_dir) == ([], [])


def test_a_batch_rejected_at_the_claim_sits_in_quarantine_with_its_report(
    zone_url: str, tmp_path: Path
) -> None:
    folder = small_batch(tmp_path / "batch")
    submit_to_s3([folder], zone_url, "bad")
    zone, s3 = parse_drop_zone(zone_url), client()
    table = next(k for k in keys_under(zone_url) if k.endswith(".csv"))
    s3.put_object(Bucket=BUCKET, Key=table, Body=b"id\n1\n")  # not what the manifest says

    result = claim_batch(s3_params(tmp_path / "w", zone_url, deadline=0), "run-1", time.time())

    assert isinstance(result, Rejected)
    stored = keys_under(zone_url)
    assert not any(f"{zone.prefix}/bad/" in k for k in stored)
    where = zone.quarantine_prefix(result.batch_id)
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=where + "report.json")["Body"].read())
    assert report["status"] == "rejected"
    assert any("sha256 differs" in r or "size" in r for r in report["reasons"])
    assert where + "_MANIFEST.json" in stored
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert all(f"{where}files/{rel}" in stored for rel in images)


def test_quarantine_repeated_after_an_interruption_ends_as_one_clean_run(
    zone_url: str, tmp_path: Path
) -> None:
    folder = small_batch(tmp_path / "batch")
    zone, s3 = parse_drop_zone(zone_url), client()
    report = {"batch_id": "b1", "status": "rejected", "reasons": ["test"]}

    submit_to_s3([folder], zone_url, "once")
    entry_once = set(keys_under(zone_url))
    s3_dropzone.quarantine(s3, zone, "once", "b1", report)
    clean = keys_under(zone_url)

    for key in clean:
        s3.delete_object(Bucket=BUCKET, Key=key)
    submit_to_s3([folder], zone_url, "once")
    assert set(keys_under(zone_url)) == entry_once
    # Cut short: some files copied and deleted, the rest still in place.
    first_file = sorted(k for k in entry_once if "/images/" in k)[0]
    rel = first_file.split("/once/", 1)[1]
    s3.copy_object(
        Bucket=BUCKET,
        Key=f"{zone.quarantine_prefix('b1')}files/{rel}",
        CopySource={"Bucket": BUCKET, "Key": first_file},
    )
    s3.delete_object(Bucket=BUCKET, Key=first_file)
    s3_dropzone.quarantine(s3, zone, "once", "b1", report)
    s3_dropzone.quarantine(s3, zone, "once", "b1", report)  # again: nothing left to move

    assert keys_under(zone_url) == clean


def test_a_batch_with_images_fetched_from_s3_has_the_id_it_has_locally(
    zone_url: str, tmp_path: Path
) -> None:
    folder = small_batch(tmp_path / "batch", number=3)
    local = ingest_params(tmp_path / "local")
    submit([folder], local.incoming_dir, "pears")
    by_folder = claim_batch(local, "run-local", time.time())

    printed = subprocess.run(
        [MAINSTEM, "submit", "--to", zone_url, "--name", "pears", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{zone_url}/pears/" in printed.stdout
    by_s3 = claim_batch(s3_params(tmp_path / "w", zone_url), "run-s3", time.time())

    assert isinstance(by_folder, Claimed)
    assert isinstance(by_s3, Claimed)
    assert by_s3.batch_id == by_folder.batch_id
    assert by_s3.name == "pears"
    fetched = tmp_path / "w" / "incoming"
    assert (fetched / "images").is_dir()
    for source in folder.rglob("*"):
        if source.is_file():
            assert (fetched / source.relative_to(folder)).read_bytes() == source.read_bytes()


def test_a_second_delivery_under_a_taken_name_is_refused_and_the_first_kept(
    zone_url: str, tmp_path: Path
) -> None:
    submit_to_s3([small_batch(tmp_path / "a", 1)], zone_url, "same-name")
    before = {k: client().head_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys_under(zone_url)}
    again = submit_to_s3([small_batch(tmp_path / "a", 1)], zone_url, "same-name")
    assert "already delivered" in again
    with pytest.raises(Exception, match="already holds other bytes"):
        submit_to_s3([small_batch(tmp_path / "b", 2)], zone_url, "same-name")
    after = {k: client().head_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys_under(zone_url)}
    assert after == before


def test_batches_are_claimed_oldest_ready_first(zone_url: str, tmp_path: Path) -> None:
    submit_to_s3([small_batch(tmp_path / "z", 1)], zone_url, "z-first")
    time.sleep(1.1)  # S3 stamps LastModified to the second
    submit_to_s3([small_batch(tmp_path / "a", 2)], zone_url, "a-second")
    params = s3_params(tmp_path / "w", zone_url)
    first = claim_batch(params, "run-1", time.time())
    assert isinstance(first, Claimed)
    assert first.name == "z-first"
    release_batch(params, None, first.owner)
    second = claim_batch(params, "run-1", time.time())
    assert isinstance(second, Claimed)
    assert second.name == "a-second"


def test_an_unreachable_endpoint_is_one_line_naming_it(
    zone_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    with pytest.raises(DropZoneUnreachableError, match="unreachable"):
        claim_batch(s3_params(tmp_path / "w", zone_url), "run-1", time.time())
    done = subprocess.run(
        [MAINSTEM, "submit", "--to", zone_url, str(small_batch(tmp_path / "batch"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": dead},
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "unreachable" in done.stderr


def test_a_missing_bucket_says_so(zone_url: str, tmp_path: Path) -> None:
    with pytest.raises(DropZoneBucketMissingError, match="does not exist"):
        claim_batch(s3_params(tmp_path / "w", "s3://no-such-bucket/drop"), "run-1", time.time())


def test_missing_credentials_are_access_denied(
    zone_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(DropZoneAccessDeniedError, match="no AWS credentials"):
        claim_batch(s3_params(tmp_path / "w", zone_url), "run-1", time.time())


def test_a_workspace_on_an_s3_drop_zone_processes_a_batch_and_clears_it(
    workspace: Path, zone_url: str, tmp_path: Path
) -> None:
    params_file = workspace / "params.yaml"
    text = params_file.read_text(encoding="utf-8")
    params_file.write_text(
        text.replace("incoming_dir: data/incoming", f"incoming_dir: {zone_url}"), encoding="utf-8"
    )
    from mainstem.commands import git

    git(["commit", "--quiet", "-am", "pipeline: the drop zone on S3"], workspace)
    submit_to_s3([make_batch(tmp_path / "b", BatchSpec(1, first_id=1, rows=20))], zone_url, "b1")

    run = process_next_batch(workspace)

    assert isinstance(run.claim, Claimed)
    assert run.report is not None
    assert run.report["status"] == "accepted"
    assert keys_under(zone_url) == []
    assert read_held(workspace / "data" / "incoming") is None


def test_status_shows_the_queue_of_an_s3_drop_zone(
    workspace: Path, zone_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mainstem.cli import main as mainstem

    params_file = workspace / "params.yaml"
    text = params_file.read_text(encoding="utf-8")
    params_file.write_text(
        text.replace("incoming_dir: data/incoming", f"incoming_dir: {zone_url}"), encoding="utf-8"
    )
    submit_to_s3([small_batch(tmp_path / "a", 1)], zone_url, "first")
    submit_to_s3([small_batch(tmp_path / "b", 2)], zone_url, "second")

    mainstem(["status", "--no-airflow", "--json", "--workspace", str(workspace)])
    zone = json.loads(capsys.readouterr().out)["drop_zone"]
    mainstem(["status", "--no-airflow", "--workspace", str(workspace)])
    shown = capsys.readouterr().out

    assert (zone["url"], zone["waiting"], zone["names"]) == (zone_url, 2, ["first", "second"])
    assert f"drop zone: {zone_url}" in shown
    assert "2 batch(es) wait" in shown
