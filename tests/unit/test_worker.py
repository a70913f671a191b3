"""How a worker reads git's and DVC's answers (a refused push, the batch's commit, lost objects)
and how it hands a claimed batch to its clone's drop folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mainstem.errors import MainstemError
from mainstem.flow.worker import commit_of_batch, deliver, missing_objects, push_was_rejected

LOG = (
    "c3 batch bbbb (batch-002): accepted; 5 rows in, 5 accepted, 0 rejected; master 10 rows\n"
    "c2 pipeline: validate.contract_version 1 → 2 (contract produce/v2)\n"
    "c1 batch aaaa (batch-001): duplicate delivery, nothing applied; master 5 rows\n"
)


def test_non_fast_forward_push_is_a_rejection() -> None:
    stderr = " ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push some refs\n"
    assert push_was_rejected(stderr)


def test_unreachable_remote_is_not_a_rejection() -> None:
    stderr = "fatal: '/nowhere.git' does not appear to be a git repository\n"
    assert not push_was_rejected(stderr)


def test_batch_commit_is_found_by_the_id_its_title_names() -> None:
    assert commit_of_batch(LOG, "aaaa") == "c1"
    assert commit_of_batch(LOG, "bbbb") == "c3"


def test_no_commit_for_a_batch_the_log_does_not_name() -> None:
    assert commit_of_batch(LOG, "cccc") is None
    assert commit_of_batch(LOG, "batch-002") is None


def test_missing_objects_are_named_by_md5() -> None:
    output = (
        "ERROR: failed to transfer '8c1ec7d512be28b80d8ccaab50232f03' - [Errno 2] No such file "
        "or directory: '/r/files/md5/8c/1ec7d512be28b80d8ccaab50232f03'\n"
        "ERROR: failed to pull data from the cloud - 1 files failed to download\n"
    )
    assert missing_objects(output) == ["8c1ec7d512be28b80d8ccaab50232f03"]


def test_a_network_failure_names_no_missing_object() -> None:
    output = "ERROR: failed to pull data from the cloud - Could not connect to the endpoint URL\n"
    assert missing_objects(output) == []


def test_plain_folder_is_delivered_with_a_manifest_and_ready(tmp_path: Path) -> None:
    batch = tmp_path / "batch-007"
    (batch / "images").mkdir(parents=True)
    (batch / "rows.csv").write_text("id\n1\n")
    (batch / "images" / "a.png").write_bytes(b"png")

    deliver(batch, tmp_path / "incoming")

    manifest = json.loads((tmp_path / "incoming" / "_MANIFEST.json").read_text())
    assert manifest["name"] == "batch-007"
    assert sorted(f["path"] for f in manifest["files"]) == ["images/a.png", "rows.csv"]
    assert (tmp_path / "incoming" / "_READY").exists()


def test_drop_zone_batch_keeps_its_producers_manifest(tmp_path: Path) -> None:
    batch = tmp_path / "zone" / "b1"
    batch.mkdir(parents=True)
    (batch / "rows.csv").write_text("id\n1\n")
    (batch / "_MANIFEST.json").write_text('{"name": "from-producer", "files": []}')
    (batch / "_PROCESSING").write_text("{}")

    deliver(batch, tmp_path / "incoming")

    incoming = tmp_path / "incoming"
    assert json.loads((incoming / "_MANIFEST.json").read_text())["name"] == "from-producer"
    assert (incoming / "_READY").exists()
    assert not (incoming / "_PROCESSING").exists()


def test_a_batch_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MainstemError, match="is not a folder"):
        deliver(tmp_path / "missing", tmp_path / "incoming")
