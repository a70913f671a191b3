"""The raw store in a real workspace: one pack per batch in DVC, every batch in the git index.

Each batch's pack replaces the one before as the ingest stage's output, so DVC's listing never
grows; a past batch is read from the DVC cache by the md5 its record names, fetched back from the
remote when the cache lost it, and a rebuild from those packs gives the incremental master byte
for byte.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

from mainstem.commands import dvc, git
from mainstem.flow.batch import process_next_batch
from mainstem.flow.contracts import contract_check
from mainstem.flow.upgrade import fetch_raw
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.raw_store import cached_pack, pack_meta, pack_path
from mainstem.intake.record_index import shard_name
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.conftest import Deliver
from tests.func.prepared import tree

BATCHES = [BatchSpec(n, first_id=1 + 4 * (n - 1), rows=6, image_size=16) for n in (1, 2, 3)]


def _process(workspace: Path, deliver: Deliver, specs: list[BatchSpec]) -> None:
    for spec in specs:
        deliver(spec)
        process_next_batch(workspace)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _locked_pack_md5(workspace: Path) -> str:
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    (out,) = lock["stages"]["ingest"]["outs"]
    assert out["path"] == "data/raw/batch.tar"
    return str(out["md5"])


def test_each_batch_leaves_one_pack_in_dvc_and_its_index_lines_in_git(
    workspace: Path, deliver: Deliver
) -> None:
    _process(workspace, deliver, BATCHES)
    raw_dir = load_params(workspace).ingest.raw_dir

    records = list_raw_batches(raw_dir)
    assert [(r.sequence, r.name) for r in records] == [(1, "batch-001"), (2, "batch-002"),
                                                      (3, "batch-003")]  # fmt: skip
    assert sorted(p.name for p in raw_dir.iterdir()) == [".gitignore", "batch.tar", "index"]
    assert (pack_meta(pack_path(raw_dir)) or {})["batch_id"] == records[-1].batch_id
    assert _locked_pack_md5(workspace) == records[-1].md5
    for record in records:
        assert _md5(cached_pack(workspace, record.md5)) == record.md5
    tracked = git(["ls-files", "data/raw/index"], workspace).stdout.split()
    shards = sorted({f"data/raw/index/id/{shard_name(r.batch_id)}" for r in records})
    assert tracked == sorted(["data/raw/index/seq/00000000.jsonl", *shards])
    committed = git(["show", "HEAD:data/raw/index/seq/00000000.jsonl"], workspace).stdout
    assert [json.loads(row)["sequence"] for row in committed.splitlines()] == [1, 2, 3]
    assert git(["status", "--porcelain"], workspace).stdout == ""


def test_a_rebuild_from_the_packs_equals_the_incremental_master(
    workspace: Path, deliver: Deliver
) -> None:
    _process(workspace, deliver, BATCHES)
    params = load_params(workspace)
    master = tree(params.merge.master_dir)
    metrics = {m: m.read_bytes() for m in (params.merge.metrics_file, params.validate.metrics_file)}
    shutil.rmtree(params.validate.validated_dir)
    shutil.rmtree(params.merge.master_dir)

    dvc(["repro", "--quiet", "merge"], workspace)

    assert tree(params.merge.master_dir) == master
    assert {m: m.read_bytes() for m in metrics} == metrics
    assert git(["status", "--porcelain"], workspace).stdout == ""


def test_a_pack_missing_from_the_cache_is_named_then_fetched_from_the_remote(
    workspace: Path, deliver: Deliver
) -> None:
    _process(workspace, deliver, BATCHES)
    params = load_params(workspace)
    first = list_raw_batches(params.ingest.raw_dir)[0]
    cached_pack(workspace, first.md5).unlink()
    shutil.rmtree(params.validate.validated_dir)

    failed = dvc(["repro", "--quiet", "merge"], workspace, check=False)
    assert failed.returncode != 0
    assert f"raw batch {first.batch_id}" in failed.stderr
    assert "mainstem upgrade --fetch-raw" in failed.stderr

    assert fetch_raw(workspace) == 1
    dvc(["repro", "--quiet", "merge"], workspace)
    assert git(["status", "--porcelain"], workspace).stdout == ""


def test_contract_check_replays_past_batches_from_their_packs(
    workspace: Path, deliver: Deliver
) -> None:
    _process(workspace, deliver, BATCHES)
    check = contract_check(load_params(workspace), 2, batches=3)
    assert [b.name for b in check.batches] == ["batch-001", "batch-002", "batch-003"]
    assert [b.rows_in for b in check.batches] == [6, 6, 6]


def test_a_duplicate_delivery_adds_no_pack_and_no_record(workspace: Path, deliver: Deliver) -> None:
    _process(workspace, deliver, BATCHES[:2])
    md5 = _locked_pack_md5(workspace)
    _process(workspace, deliver, [BATCHES[0]])  # the same content again
    raw_dir = load_params(workspace).ingest.raw_dir
    assert [r.sequence for r in list_raw_batches(raw_dir)] == [1, 2]
    assert _locked_pack_md5(workspace) == md5
