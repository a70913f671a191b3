"""Every commit mainstem makes is a complete snapshot: checked out and pulled, DVC is up to date.

The README's story: batches under contract v1, an experiment with v2 (`dvc exp run`, which leaves
params.yaml changed), the switch recorded as a pipeline commit, more batches, a re-delivery.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mainstem.commands import dvc, git
from mainstem.errors import LockError, PipelineChangedError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.pipeline_commit import commit_pipeline
from mainstem.flow.status import recent_batches
from mainstem.flow.workspace import configure_remote
from mainstem.intake.delivery import READY
from mainstem.intake.raw_store import pack_meta, pack_path
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.conftest import Deliver


def _subjects(root: Path) -> list[str]:
    return git(["log", "--format=%s"], root).stdout.splitlines()


def _clone(workspace: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    git(["clone", "--quiet", str(workspace), str(clone)], tmp_path)
    configure_remote(clone)
    name = load_params(workspace).remote.name
    dvc(["remote", "modify", "--local", name, "url", str(tmp_path / "remote")], clone)
    return clone


def _assert_every_commit_is_a_snapshot(workspace: Path, tmp_path: Path) -> list[str]:
    """Check out every commit in a clone, pull it and ask DVC; the commits, oldest first."""
    clone = _clone(workspace, tmp_path)
    commits = git(["rev-list", "--reverse", "HEAD"], workspace).stdout.split()
    for commit in commits:
        git(["checkout", "--quiet", "--force", commit], clone)
        subject = git(["log", "-1", "--format=%s", commit], clone).stdout.strip()
        pulled = dvc(["pull", "--force"], clone, check=False)
        assert pulled.returncode == 0, f"{subject}: {pulled.stderr}"
        status = dvc(["status"], clone).stdout
        assert "up to date" in status, f"{subject}: {status}"
        assert git(["status", "--porcelain"], clone).stdout == "", subject
    return commits


def _use_contract_in_params(workspace: Path, version: int) -> None:
    params_file = workspace / "params.yaml"
    text = params_file.read_text()
    current = load_params(workspace).validate.contract_version
    params_file.write_text(
        text.replace(f"contract_version: {current}", f"contract_version: {version}")
    )


def test_experiment_switch_and_batches_leave_only_complete_snapshots(
    workspace: Path, deliver: Deliver, tmp_path: Path
) -> None:
    dvc(["push", "--quiet"], workspace)  # the fixture's copy points at a remote of its own
    deliver(BatchSpec(1, first_id=1, rows=40, loose_rows=9))
    process_next_batch(workspace)

    # the README's experiment: leaves params.yaml at v2 in the workspace
    dvc(["exp", "run", "--quiet", "-S", "validate.contract_version=2", "merge"], workspace)
    deliver(BatchSpec(2, first_id=41, rows=20))
    with pytest.raises(PipelineChangedError, match=r"params.yaml.*mainstem pipeline commit"):
        process_next_batch(workspace)
    params = load_params(workspace)
    assert (params.ingest.incoming_dir / READY).exists(), "the refusal must claim nothing"

    commit = commit_pipeline(workspace)
    assert commit is not None
    subject = _subjects(workspace)[0]
    assert subject == "pipeline: validate.contract_version 1 → 2 (contract produce/v2)"
    body = git(["log", "-1", "--format=%b"], workspace).stdout
    assert "master: 40 → 31 rows" in body

    # a new contract file, untracked until the pipeline commit that first uses it
    v3 = workspace / "contracts" / "produce" / "v3.yaml"
    v3.write_text(
        (workspace / "contracts" / "produce" / "v2.yaml")
        .read_text()
        .replace("version: 2", "version: 3")
    )
    _use_contract_in_params(workspace, 3)
    assert commit_pipeline(workspace) is not None
    assert (
        "contracts/produce/v3.yaml (added)" in git(["log", "-1", "--format=%b"], workspace).stdout
    )
    assert git(["ls-files", "contracts/produce/v3.yaml"], workspace).stdout.strip()

    run = process_next_batch(workspace)
    assert run.report is not None
    assert run.report["contract"] == "produce/v3"
    deliver(BatchSpec(1, first_id=1, rows=40, loose_rows=9))  # the same content again
    process_next_batch(workspace)

    subjects = _subjects(workspace)
    assert "duplicate delivery, nothing applied; master 51 rows" in subjects[0]
    assert "(batch-002): accepted" in subjects[1]
    assert len(pd.read_parquet(params.merge.master_dir)) == 51
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert len(_assert_every_commit_is_a_snapshot(workspace, tmp_path)) == 6


def test_the_claim_ticket_stays_small_and_the_raw_snapshot_lists_the_files(
    workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=60))
    run = process_next_batch(workspace)
    params = load_params(workspace)

    ticket = json.loads(params.ingest.claimed_batch.read_text())
    assert set(ticket) == {"batch_id", "name", "file_count", "bytes", "duplicate_of"}
    assert ticket["file_count"] == 61  # the table and 60 photos
    assert len(params.ingest.claimed_batch.read_text().splitlines()) < 10
    raw = pack_meta(pack_path(params.ingest.raw_dir))
    assert raw is not None
    assert raw["batch_id"] == ticket["batch_id"]
    assert len(raw["files"]) == 61
    assert run.report is not None
    assert run.report["rows_accepted"] == 60
    assert not (params.ingest.claimed_batch.with_name("claimed_batch.files.json")).exists()


def test_a_pipeline_commit_waits_for_the_claimed_batch(workspace: Path, deliver: Deliver) -> None:
    deliver(BatchSpec(1, first_id=1, rows=10))
    from mainstem.flow.runner import FlowRun, run_step
    from mainstem.flow.sequences import BATCH_FLOW

    run_step(BATCH_FLOW, "claim", FlowRun(workspace, "run-1"), {})
    _use_contract_in_params(workspace, 2)
    with pytest.raises(LockError, match="is claimed by"):
        commit_pipeline(workspace)
    with pytest.raises(PipelineChangedError, match=r"git checkout HEAD -- params\.yaml"):
        run_step(BATCH_FLOW, "repro", FlowRun(workspace, "run-1"), {})


def test_status_does_not_call_an_accepted_batch_quarantined(
    workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=10))
    run = process_next_batch(workspace)
    params = load_params(workspace)
    assert run.report is not None
    # an earlier delivery of the same content, rejected by the contract in force then
    earlier = params.ingest.quarantine_dir / run.report["batch_id"]
    earlier.mkdir(parents=True)
    shutil.copy(params.ingest.claimed_batch, earlier / "report.json")

    (entry,) = recent_batches(params)
    assert entry["outcome"] == "accepted"
    assert "quarantine" not in entry
    assert entry["quarantined_before"] == str(earlier)


def test_a_discarded_experiment_leaves_the_next_batch_a_complete_snapshot(
    workspace: Path, deliver: Deliver, tmp_path: Path
) -> None:
    dvc(["push", "--quiet"], workspace)
    deliver(BatchSpec(1, first_id=1, rows=40, loose_rows=9))
    process_next_batch(workspace)
    dvc(["exp", "run", "--quiet", "-S", "validate.contract_version=2", "merge"], workspace)

    # the README's way to discard it
    git(["checkout", "HEAD", "--", "params.yaml", "dvc.lock", "metrics"], workspace)
    dvc(["checkout", "--quiet", "--force"], workspace)
    deliver(BatchSpec(2, first_id=41, rows=20))
    run = process_next_batch(workspace)

    assert run.report is not None
    assert run.report["contract"] == "produce/v1"
    assert run.master_rows == 60
    assert git(["status", "--porcelain"], workspace).stdout == ""
    _assert_every_commit_is_a_snapshot(workspace, tmp_path)


def test_a_training_waits_for_the_pipeline_commit_too(workspace: Path) -> None:
    from mainstem.flow.runner import FlowRun, run_step
    from mainstem.flow.sequences import TRAINING_FLOW

    _use_contract_in_params(workspace, 2)
    request = load_params(workspace).train.request_file
    before = request.read_bytes()

    with pytest.raises(PipelineChangedError, match="no batch or training runs"):
        run_step(TRAINING_FLOW, "train", FlowRun(workspace, "trainer"), {"decision": {}})
    assert request.read_bytes() == before
