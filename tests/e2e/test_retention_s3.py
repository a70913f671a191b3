"""Retention against an S3 remote: `mainstem gc` deletes dropped packs from the bucket itself.

The same moto_server on 127.0.0.1 as the S3 remote's own test; DVC's S3 file system does the
deleting, with the endpoint and credentials from the environment.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3

from mainstem.flow.batch import process_next_batch
from mainstem.flow.gc import collect_garbage
from mainstem.flow.lineage_check import DROPPED, check_commit
from mainstem.flow.workspace import configure_remote
from mainstem.intake.ingest import list_raw_batches
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.conftest import Deliver
from tests.e2e.test_s3_remote import BUCKET, pytestmark, s3_endpoint, s3_env

__all__ = ["pytestmark", "s3_endpoint", "s3_env"]  # fixtures this module shares


def _keys(endpoint: str, prefix: str) -> set[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in listed.get("Contents", [])}


def test_gc_deletes_dropped_packs_from_an_s3_remote(
    workspace: Path, deliver: Deliver, s3_env: str, s3_endpoint: str
) -> None:
    configure_remote(workspace)
    for n in (1, 2):
        deliver(BatchSpec(n, first_id=1 + 4 * (n - 1), rows=6, image_size=16))
        process_next_batch(workspace)
    first, second = list_raw_batches(load_params(workspace).ingest.raw_dir)
    prefix = s3_env.removeprefix(f"s3://{BUCKET}/")
    key = f"{prefix}/files/md5/{first.md5[:2]}/{first.md5[2:]}"
    assert key in _keys(s3_endpoint, prefix)

    result = collect_garbage(workspace, 1, time.time() + 3 * 86_400)

    assert [d.record.batch_id for d in result.drops] == [first.batch_id]
    stored = _keys(s3_endpoint, prefix)
    assert key not in stored
    assert f"{prefix}/files/md5/{second.md5[:2]}/{second.md5[2:]}" in stored
    commit_of_first = [c for c in check_commit(workspace, "HEAD~2") if c.path.endswith(".tar")]
    assert [c.state for c in commit_of_first] == [DROPPED]
