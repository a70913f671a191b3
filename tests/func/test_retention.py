"""Retention in a workspace: `mainstem gc --keep-raw DAYS` with real git, DVC and a local remote.

Three batches are processed once per module; each test works on its own copy (workspace and
remote). Commits are a few seconds old, so a gc "three days from now" is what finds them old:
the age still comes from the commit dates git recorded, only the clock is moved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mainstem import crashpoints
from mainstem.commands import dvc, git
from mainstem.errors import LockError, RawBatchDroppedError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.contracts import contract_check
from mainstem.flow.gc import collect_garbage
from mainstem.flow.lineage_check import DROPPED, STORED, check_commit
from mainstem.flow.status import describe, recent_batches, workspace_status
from mainstem.flow.upgrade import fetch_raw
from mainstem.flow.workspace import configure_remote
from mainstem.intake import lock
from mainstem.intake.dropfolder import claim_batch
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.raw_store import RawRecord, cached_pack
from mainstem.intake.raw_tombstones import tombstone_of
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from tests.conftest import ROOT
from tests.func.prepared import tree

BATCHES = [BatchSpec(n, first_id=1 + 4 * (n - 1), rows=6, image_size=16) for n in (1, 2, 3)]
LATER = 3 * 86_400  # three days from now


def _deliver(workspace: Path, scratch: Path, spec: BatchSpec) -> None:
    folder = make_batch(scratch / spec.name, spec)
    submit([folder], load_params(workspace).ingest.incoming_dir, spec.name)


@pytest.fixture(scope="module")
def processed(workspace_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace (and its remote beside it) that processed three batches."""
    base = tmp_path_factory.mktemp("retention")
    workspace = base / "workspace"
    shutil.copytree(workspace_template, workspace, symlinks=True)
    configure_remote(workspace)
    for spec in BATCHES:
        _deliver(workspace, base / "deliveries", spec)
        process_next_batch(workspace)
    return workspace


def _copy(processed: Path, dest: Path) -> Path:
    """A private copy of the processed workspace and its remote; the workspace's path."""
    for name in ("workspace", "remote"):
        shutil.copytree(processed.parent / name, dest / name, symlinks=True)
    configure_remote(dest / "workspace")
    return dest / "workspace"


@pytest.fixture
def workspace3(processed: Path, tmp_path: Path) -> Path:
    return _copy(processed, tmp_path)


def _records(workspace: Path) -> list[RawRecord]:
    return list_raw_batches(load_params(workspace).ingest.raw_dir)


def _in_remote(workspace: Path, md5: str) -> bool:
    return (workspace.parent / "remote" / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def _head(workspace: Path) -> str:
    return git(["rev-parse", "HEAD"], workspace).stdout.strip()


def _lineage_commit_of(workspace: Path, name: str) -> str:
    found = git(["log", "--format=%H", f"--grep=({name})"], workspace).stdout.split()
    return found[-1]


def test_gc_drops_old_packs_from_cache_and_remote_after_one_gc_commit(workspace3: Path) -> None:
    params = load_params(workspace3)
    first, second, newest = _records(workspace3)
    master = tree(params.merge.master_dir)
    assert all(_in_remote(workspace3, r.md5) for r in (first, second, newest))

    result = collect_garbage(workspace3, 1, time.time() + LATER)

    assert [d.record.batch_id for d in result.drops] == [first.batch_id, second.batch_id]
    for gone in (first, second):
        assert not cached_pack(workspace3, gone.md5).exists()
        assert not _in_remote(workspace3, gone.md5)
        assert tombstone_of(params.ingest.raw_dir, gone.batch_id) is not None
    assert cached_pack(workspace3, newest.md5).is_file()
    assert _in_remote(workspace3, newest.md5)
    subject = git(["log", "-1", "--format=%s"], workspace3).stdout.strip()
    assert subject == (
        f"gc: dropped the raw packs of 2 batch(es) older than 1 days "
        f"({first.size + second.size} bytes)"
    )
    assert result.commit == _head(workspace3)
    assert tree(params.merge.master_dir) == master
    assert git(["status", "--porcelain"], workspace3).stdout == ""
    assert "up to date" in dvc(["status"], workspace3).stdout


def test_a_second_gc_drops_nothing_and_commits_nothing(workspace3: Path) -> None:
    later = time.time() + LATER
    collect_garbage(workspace3, 1, later)
    head = _head(workspace3)

    again = collect_garbage(workspace3, 1, later)

    assert again.drops == []
    assert again.commit is None
    assert _head(workspace3) == head


def test_packs_younger_than_the_age_to_keep_stay(workspace3: Path) -> None:
    head = _head(workspace3)
    result = collect_garbage(workspace3, 1, time.time())
    assert result.drops == []
    assert _head(workspace3) == head
    assert all(cached_pack(workspace3, r.md5).is_file() for r in _records(workspace3))


def test_dry_run_lists_the_packs_and_bytes_and_changes_nothing(workspace3: Path) -> None:
    first, second, _newest = _records(workspace3)
    head = _head(workspace3)

    listed = subprocess.run(
        [sys.executable, "-m", "mainstem.cli", "gc", "--workspace", str(workspace3),
         "--keep-raw", "0", "--dry-run"],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip

    assert listed.returncode == 0, listed.stderr
    assert f"would drop the raw packs of 2 batch(es), {first.size + second.size} bytes" in (
        listed.stdout
    )
    assert first.batch_id in listed.stdout
    assert second.batch_id in listed.stdout
    assert _head(workspace3) == head
    assert cached_pack(workspace3, first.md5).is_file()
    assert _in_remote(workspace3, first.md5)


def test_a_reader_of_a_dropped_pack_stops_with_one_line_naming_the_batch(workspace3: Path) -> None:
    first = _records(workspace3)[0]
    collect_garbage(workspace3, 1, time.time() + LATER)
    params = load_params(workspace3)

    with pytest.raises(RawBatchDroppedError, match=f"raw batch {first.batch_id}.*retention"):
        contract_check(params, 2, batches=3)
    assert [b.name for b in contract_check(params, 2, batches=1).batches] == ["batch-003"]

    checked = subprocess.run(
        [sys.executable, "-m", "mainstem.cli", "contract", "check", "2", "--batches", "3",
         "--workspace", str(workspace3)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert checked.returncode == 1
    (line,) = checked.stderr.strip().splitlines()
    assert f"raw batch {first.batch_id} (batch-001)" in line
    assert "dropped by retention" in line


def test_a_rebuild_under_new_validation_refuses_and_names_the_dropped_batch(
    workspace3: Path,
) -> None:
    first = _records(workspace3)[0]
    collect_garbage(workspace3, 1, time.time() + LATER)
    params = load_params(workspace3)
    master = tree(params.merge.master_dir)
    shutil.rmtree(params.validate.validated_dir)  # what a new contract or code would rebuild

    failed = dvc(["repro", "--quiet", "merge"], workspace3, check=False)

    assert failed.returncode != 0
    assert f"raw batch {first.batch_id} (batch-001)" in failed.stderr
    assert "dropped by retention" in failed.stderr
    assert tree(params.merge.master_dir) == master
    assert fetch_raw(workspace3) == 0  # nothing to ask the remote for: the packs are gone


def test_status_and_the_lineage_check_say_a_pack_was_dropped_by_retention(
    workspace3: Path,
) -> None:
    first = _records(workspace3)[0]
    result = collect_garbage(workspace3, 1, time.time() + LATER)
    params = load_params(workspace3)

    entry = next(b for b in recent_batches(params) if b["batch_id"] == first.batch_id)
    assert entry["raw_dropped"]["gc_commit"] == result.commit
    assert entry["outcome"] == "accepted"
    status = workspace_status(params, time.time())
    assert status["retention"]["commit"] == result.commit
    assert any("raw pack dropped by retention" in line for line in describe(status))

    checks = {
        c.path: c for c in check_commit(workspace3, _lineage_commit_of(workspace3, "batch-001"))
    }
    assert checks["data/raw/batch.tar"].state == DROPPED
    assert checks["data/raw/batch.tar"].dropped["gc_commit"] == result.commit
    assert "dropped by retention" in checks["data/raw/batch.tar"].describe()
    assert {c.state for p, c in checks.items() if p != "data/raw/batch.tar"} == {STORED}
    assert {c.state for c in check_commit(workspace3, "HEAD")} == {STORED}


def test_the_lineage_check_reports_a_pack_lost_without_retention_as_missing(
    workspace3: Path,
) -> None:
    first = _records(workspace3)[0]
    cached_pack(workspace3, first.md5).unlink()
    remote = workspace3.parent / "remote" / "files" / "md5" / first.md5[:2] / first.md5[2:]
    remote.unlink()

    lineage_check = subprocess.run(
        [sys.executable, "-m", "mainstem.cli", "lineage", "check", "--workspace",
         str(workspace3), _lineage_commit_of(workspace3, "batch-001")],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip

    assert lineage_check.returncode == 1
    assert "data/raw/batch.tar: MISSING" in lineage_check.stdout


def test_gc_refuses_while_a_batch_is_claimed(workspace3: Path, tmp_path: Path) -> None:
    params = load_params(workspace3)
    _deliver(workspace3, tmp_path / "deliveries", BatchSpec(4, first_id=13, rows=6, image_size=16))
    claim_batch(params.ingest, "run-4", time.time())
    head = _head(workspace3)

    with pytest.raises(LockError, match=r"claimed by run run-4.*mainstem gc"):
        collect_garbage(workspace3, 1, time.time() + LATER)
    assert _head(workspace3) == head


def test_a_batch_ingested_but_not_recorded_keeps_its_pack_and_the_one_before(
    workspace3: Path, tmp_path: Path
) -> None:
    _deliver(workspace3, tmp_path / "deliveries", BatchSpec(4, first_id=13, rows=6, image_size=16))
    params = load_params(workspace3)
    claim_batch(params.ingest, "run-4", time.time())
    dvc(["repro", "--quiet", "ingest"], workspace3)  # ingested, neither merged nor committed
    lock.release(params.ingest.incoming_dir)  # as if the claim were gone: selection must still hold

    result = collect_garbage(workspace3, 1, time.time() + LATER)

    assert [d.record.name for d in result.drops] == ["batch-001", "batch-002"]


def _gc_in_child(
    workspace: Path, now: float, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from pathlib import Path; from mainstem.flow.gc import collect_garbage; "
        f"collect_garbage(Path({str(workspace)!r}), 1, {now!r})"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def _end_state(workspace: Path) -> tuple[list[str], list[bool], list[bool]]:
    records = _records(workspace)
    subjects = git(["log", "--format=%s"], workspace).stdout.splitlines()
    return (
        subjects,
        [cached_pack(workspace, r.md5).is_file() for r in records],
        [_in_remote(workspace, r.md5) for r in records],
    )


def test_a_gc_killed_at_any_write_point_is_finished_by_the_next(
    processed: Path, tmp_path: Path
) -> None:
    now = time.time() + LATER
    clean = _copy(processed, tmp_path / "clean")
    trace = tmp_path / "clean.trace"
    run = _gc_in_child(
        clean,
        now,
        {crashpoints.COUNTER: str(tmp_path / "clean.count"), crashpoints.TRACE: str(trace)},
    )
    assert run.returncode == 0, run.stderr
    labels = crashpoints.read_trace(trace)
    assert {"gc tombstone", "lineage commit", "gc drop remote", "gc drop cache"} <= set(labels)
    expected = _end_state(clean)

    for k in range(1, len(labels) + 1):
        workspace = _copy(processed, tmp_path / f"crash-{k}")
        counter = workspace.parent / "crash.count"
        crashed = _gc_in_child(
            workspace, now, {crashpoints.COUNTER: str(counter), crashpoints.CRASH_AT: str(k)}
        )
        assert crashed.returncode == -9, f"{labels[k - 1]}: {crashed.stderr}"
        # what lineage claims is never gone: a pack without a committed tombstone is stored
        where = "data/raw/index/dropped"
        committed = git(["grep", "-h", "", "HEAD", "--", where], workspace, check=False).stdout
        for r in _records(workspace):
            if r.batch_id not in committed:
                assert cached_pack(workspace, r.md5).is_file(), labels[k - 1]
                assert _in_remote(workspace, r.md5), labels[k - 1]

        recovered = _gc_in_child(workspace, now, {})
        assert recovered.returncode == 0, recovered.stderr
        assert _end_state(workspace) == expected, labels[k - 1]
        assert git(["status", "--porcelain"], workspace).stdout == "", labels[k - 1]


def test_a_commit_whose_pack_was_dropped_still_checks_out_with_its_master(
    workspace3: Path, tmp_path: Path
) -> None:
    collect_garbage(workspace3, 1, time.time() + LATER)
    commit = _lineage_commit_of(workspace3, "batch-001")
    clone = tmp_path / "clone"
    git(["clone", "--quiet", str(workspace3), str(clone)], tmp_path)
    configure_remote(clone)
    git(["checkout", "--quiet", commit], clone)

    whole = dvc(["pull"], clone, check=False)
    assert whole.returncode != 0
    assert "data/raw/batch.tar" in whole.stderr + whole.stdout

    dvc(["pull", "--quiet", "data/master.parquet", "data/validated/batch"], clone)
    params = load_params(clone)
    rows = json.loads(params.merge.metrics_file.read_text())["master_rows"]
    assert len(pd.read_parquet(params.merge.master_dir)) == rows == 6
