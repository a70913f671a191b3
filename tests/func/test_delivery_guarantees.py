"""Re-delivery, an early `_READY` and two claimants, through the whole batch path with real DVC.

Each test starts from a copy of the prepared workspace (FIRST processed, SECOND waiting):
- the same content under another name is a duplicate: the master and its metrics stay
  byte-identical, and the run still records and releases; the same name with new content is data;
- a `_READY` that comes before the files match the manifest ingests nothing; a file rewritten after
  the claim is never snapshotted;
- two batch runs started together apply the batch once, leaving the master of a single run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pytest

from mainstem.commands import dvc, git
from mainstem.errors import BatchFailedError
from mainstem.flow.batch import process_next_batch, repro_args, run_dvc
from mainstem.intake.delivery import PROCESSING, READY
from mainstem.intake.dropfolder import Claimed, Idle, Rejected, claim_batch
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import Params, load_params
from tests.func.prepared import SECOND, copy_setup, prepare, run_batch, tree


@pytest.fixture(scope="module")
def template(workspace_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(tmp_path_factory.mktemp("delivery"), workspace_template)


@pytest.fixture
def workspace(template: Path, tmp_path: Path) -> Path:
    return copy_setup(template, tmp_path / "setup")


def _payload(params: Params) -> list[str]:
    incoming = params.ingest.incoming_dir
    return sorted(
        p.relative_to(incoming).as_posix()
        for p in incoming.rglob("*")
        if p.is_file() and not p.name.startswith(".claim-")
    )


def _subjects(workspace: Path) -> list[str]:
    return git(["log", "--format=%s"], workspace).stdout.splitlines()


def test_same_content_under_another_name_is_a_duplicate_that_leaves_the_master_untouched(
    workspace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = load_params(workspace)
    first = process_next_batch(workspace).claim
    assert isinstance(first, Claimed)
    master = tree(params.merge.master_dir)
    metrics = params.merge.metrics_file.read_bytes()
    again = make_batch(tmp_path / "again", SECOND)
    (again / f"{SECOND.name}.csv").rename(again / "resent.csv")
    submit([again], params.ingest.incoming_dir, "batch-002-resent")

    with caplog.at_level(logging.WARNING, logger="mainstem.intake.dropfolder"):
        run = process_next_batch(workspace)

    assert isinstance(run.claim, Claimed)
    assert run.claim.duplicate
    assert run.claim.batch_id == first.batch_id
    assert f"is a duplicate of batch {first.batch_id}" in caplog.text
    assert tree(params.merge.master_dir) == master
    assert params.merge.metrics_file.read_bytes() == metrics
    assert _subjects(workspace)[0] == (
        f"batch {first.batch_id} (batch-002-resent): duplicate delivery, nothing applied; "
        f"master {run.master_rows} rows"
    )
    assert _payload(params) == []
    assert not (params.ingest.incoming_dir / PROCESSING).exists()
    assert "up to date" in dvc(["status"], workspace).stdout


def test_same_name_with_new_content_is_applied_as_new_data(workspace: Path, tmp_path: Path) -> None:
    params = load_params(workspace)
    process_next_batch(workspace)
    newer = BatchSpec(3, first_id=20, rows=2, image_size=16)
    submit([make_batch(tmp_path / "newer", newer)], params.ingest.incoming_dir, SECOND.name)

    run = process_next_batch(workspace)

    assert isinstance(run.claim, Claimed)
    assert not run.claim.duplicate
    ids = set(pd.read_parquet(params.merge.master_dir)["item_id"])
    assert {20, 21} <= ids
    assert [raw.name for raw in list_raw_batches(params.ingest.raw_dir)][-2:] == [
        SECOND.name,
        SECOND.name,
    ]


def test_early_ready_ingests_nothing_until_the_files_match(workspace: Path, tmp_path: Path) -> None:
    params = load_params(workspace)
    master = tree(params.merge.master_dir)
    raw_before = [raw.batch_id for raw in list_raw_batches(params.ingest.raw_dir)]
    image = next((params.ingest.incoming_dir / "images").iterdir())
    complete = image.read_bytes()
    image.write_bytes(complete[: len(complete) // 3])  # the producer has not finished it

    waiting = process_next_batch(workspace)

    assert isinstance(waiting.claim, Idle)
    assert tree(params.merge.master_dir) == master
    assert [raw.batch_id for raw in list_raw_batches(params.ingest.raw_dir)] == raw_before
    assert (params.ingest.incoming_dir / READY).exists()
    image.write_bytes(complete)
    assert isinstance(process_next_batch(workspace).claim, Claimed)


def test_file_rewritten_after_the_claim_is_never_ingested(workspace: Path) -> None:
    params = load_params(workspace)
    master = tree(params.merge.master_dir)
    claim = claim_batch(params.ingest, "run-1", time.time())
    assert isinstance(claim, Claimed)
    image = next((params.ingest.incoming_dir / "images").iterdir())
    image.write_bytes(image.read_bytes()[:100])

    with pytest.raises(BatchFailedError, match="changed after the batch was claimed"):
        run_dvc(workspace, repro_args(), claim.batch_id)

    assert not (params.ingest.raw_dir / claim.batch_id).exists()
    assert [p.name for p in params.ingest.raw_dir.parent.iterdir() if "staging" in p.name] == []
    rejected = process_next_batch(workspace, run_id="run-1").claim
    assert isinstance(rejected, Rejected)
    assert any("sha256 differs" in reason or "size" in reason for reason in rejected.reasons)
    assert (rejected.quarantine / "report.json").exists()
    assert tree(params.merge.master_dir) == master


def test_two_batch_runs_started_together_leave_the_master_of_one_run(
    template: Path, tmp_path: Path
) -> None:
    single = copy_setup(template, tmp_path / "single")
    alone = run_batch(single, "alone")
    _out, err = alone.communicate()
    assert alone.returncode == 0, err
    racing = copy_setup(template, tmp_path / "racing")

    runs = [run_batch(racing, "scheduled"), run_batch(racing, "manual")]
    errors = [run.communicate()[1] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], errors
    params = load_params(racing)
    assert tree(params.merge.master_dir) == tree(load_params(single).merge.master_dir)
    assert _subjects(racing) == _subjects(single)
    assert _payload(params) == []
