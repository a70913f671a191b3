"""The DVC remote on S3 (dvc-s3) against a real S3-protocol server on 127.0.0.1 (moto_server).

A workspace processes batches and pushes to the bucket; a fresh `git clone` pulls from it and
rebuilds the master byte for byte. The endpoint and bucket come from the environment, the
credentials too, and none of them reaches a file git tracks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from mainstem.cli import main
from mainstem.commands import dvc, git
from mainstem.flow.batch import process_next_batch
from mainstem.flow.workspace import REMOTE_ENDPOINT_ENV, REMOTE_URL_ENV, configure_remote
from mainstem.local.samples import BatchSpec
from mainstem.local.services import free_port
from mainstem.params import load_params
from tests.conftest import Deliver

pytestmark = pytest.mark.e2e
BUCKET = "mainstem-test"
SECRET = "fake-secret-7f3a9c"  # a credential the test can look for in what git tracks


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moto_server` on 127.0.0.1 with one empty bucket; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=BUCKET)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment an operator sets for an S3 remote; the remote's URL."""
    remote = f"s3://{BUCKET}/{os.urandom(4).hex()}"
    monkeypatch.setenv(REMOTE_URL_ENV, remote)
    monkeypatch.setenv(REMOTE_ENDPOINT_ENV, s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return remote


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_push_to_s3_then_pull_in_a_fresh_clone_rebuilds_the_same_master(
    workspace: Path, deliver: Deliver, s3_env: str, s3_endpoint: str, tmp_path: Path
) -> None:
    assert configure_remote(workspace) == s3_env
    deliver(BatchSpec(1, first_id=1, rows=30, bad_rows=2, bad_images=1))
    process_next_batch(workspace)  # pushes, as a remote is configured
    deliver(BatchSpec(2, first_id=21, rows=30, table_format="parquet"))
    process_next_batch(workspace)
    assert "in sync" in dvc(["status", "--cloud"], workspace).stdout

    prefix = s3_env.removeprefix(f"s3://{BUCKET}/")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    stored = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    assert stored["KeyCount"] > 10  # raw files, validated outputs, master parts

    clone = tmp_path / "clone"
    git(["clone", "--quiet", str(workspace), str(clone)], tmp_path)
    configure_remote(clone)
    dvc(["pull", "--quiet"], clone)
    for relative in ("data/raw", "data/validated", "data/master.parquet"):
        assert tree_bytes(clone / relative) == tree_bytes(workspace / relative)

    # a rebuild of the master replays every batch: a clone first fetches their packs and files
    # (the pull brings only what its commit's dvc.lock names: the newest batch)
    main(["upgrade", "--fetch-raw", "--workspace", str(clone)])
    shutil.rmtree(clone / "data" / "master.parquet")
    dvc(["repro", "--force", "merge"], clone)
    assert tree_bytes(clone / "data/master.parquet") == tree_bytes(
        workspace / "data/master.parquet"
    )
    assert (clone / "metrics/master.json").read_bytes() == (
        workspace / "metrics/master.json"
    ).read_bytes()
    assert "up to date" in dvc(["status"], clone).stdout

    tracked = git(["ls-files"], clone).stdout.split()
    assert ".dvc/config.local" not in tracked
    leaked = git(["grep", "-l", "-e", SECRET, "-e", s3_endpoint, "-e", prefix], clone, check=False)
    assert leaked.stdout == ""
    assert load_params(clone).remote.url == "../remote"  # params.yaml still names the default
