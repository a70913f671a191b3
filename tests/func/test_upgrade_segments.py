"""`mainstem upgrade` from the release that kept one index file per batch (b88b1b6).

That release's own code processes two batches, so its lineage commits hold its own layout; the
upgrade then folds both indexes into segment files in one commit. Afterwards the batches read
back, a new batch continues the sequence, every commit checks out and checks, and retention
still finds the commit that processed each batch from before the upgrade.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mainstem.commands import git
from mainstem.errors import IndexLayoutError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.gc import collect_garbage, dropped_by
from mainstem.flow.upgrade import upgrade_workspace
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.raw_store import last_sequence
from mainstem.intake.raw_tombstones import tombstone_of
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from mainstem.validation.layout import last_validated, read_report
from tests.conftest import ROOT
from tests.func import test_upgrade as old

RELEASE_BEFORE_SEGMENTS = "b88b1b6"


def _index_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_workspace_of_one_file_per_record_folds_into_segments_and_keeps_lineage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(old, "OLD_RELEASE", RELEASE_BEFORE_SEGMENTS)
    workspace = old._old_workspace(tmp_path)
    for n in (1, 2):
        old._process_with_its_own_code(workspace, tmp_path, BatchSpec(n, 1 + 5 * (n - 1), 6))
    params = load_params(workspace)
    raw_index = params.ingest.raw_dir / "index"
    assert "seq/00/00/00/01.json" in _index_files(raw_index)  # the old layout
    with pytest.raises(IndexLayoutError, match="run `mainstem upgrade` once"):
        last_sequence(params.ingest.raw_dir)
    processed = git(["rev-list", "--reverse", "HEAD"], workspace).stdout.split()[-2:]

    assert upgrade_workspace(workspace, ROOT) is not None

    subject = git(["log", "-1", "--format=%s"], workspace).stdout.strip()
    assert subject == "upgrade: indexes in segment files (2 batches)"
    assert all(name.endswith(".jsonl") for name in _index_files(raw_index))
    validated_index = params.validate.validated_dir / "index"
    assert all(
        name.endswith(".jsonl") or name == "state.json" for name in _index_files(validated_index)
    )
    assert [r.name for r in list_raw_batches(params.ingest.raw_dir)] == ["batch-001", "batch-002"]
    assert last_validated(params.validate.validated_dir) == 2
    first = list_raw_batches(params.ingest.raw_dir)[0]
    assert (read_report(params.validate.validated_dir, first.batch_id) or {})["sequence"] == 1
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert upgrade_workspace(workspace, ROOT) is None

    folder = make_batch(tmp_path / "deliveries" / "batch-003", BatchSpec(3, 20, 4))
    submit([folder], params.ingest.incoming_dir, "batch-003")
    run = process_next_batch(workspace)
    assert run.report is not None
    assert run.report["sequence"] == 3
    assert old._assert_every_commit_checks_out(workspace, tmp_path) == 5
    commits = git(["rev-list", "--reverse", "HEAD"], workspace).stdout.split()
    checked = old._mainstem(workspace, ["lineage", "check"], *commits)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # retention dates each batch by the commit that added its id, in the old layout too
    result = collect_garbage(workspace, 1, time.time() + 30 * 86_400)
    dropped = {drop.record.name: drop.age.commit for drop in result.drops}
    assert dropped == {"batch-001": processed[0], "batch-002": processed[1]}
    stone = tombstone_of(params.ingest.raw_dir, first.batch_id)
    assert stone is not None
    assert stone.lineage_commit == processed[0]
    found = dropped_by(workspace, params.ingest.raw_dir, first.batch_id)
    assert found is not None
    assert found["gc_commit"] == git(["rev-parse", "HEAD"], workspace).stdout.strip()
