"""The batch path's `dvc push`, run through DVC's API in the process of the batch: a remote that
cannot take the outputs fails the run with one line, and the next run resumes the batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainstem.commands import dvc
from mainstem.errors import BatchFailedError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.workspace import configure_remote
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.conftest import Deliver


def test_a_push_that_fails_names_the_batch_and_the_next_run_resumes_it(
    workspace: Path, deliver: Deliver, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "remote-is-a-file"
    not_a_folder.write_text("not a folder\n", encoding="utf-8")
    name = load_params(workspace).remote.name
    dvc(["remote", "modify", "--local", name, "url", str(not_a_folder)], workspace)
    deliver(BatchSpec(1, 1, 20))

    with pytest.raises(BatchFailedError, match=r"`dvc push` failed: .+ The batch stays claimed"):
        process_next_batch(workspace)
    assert (load_params(workspace).ingest.incoming_dir / "_PROCESSING").exists()

    configure_remote(workspace)
    done = process_next_batch(workspace)
    assert done.report is not None
    assert (done.report["status"], done.master_rows) == ("accepted", 20)
    assert "in sync" in dvc(["status", "--cloud"], workspace).stdout
