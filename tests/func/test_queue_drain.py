"""A queue of several batches drained in one go: real DVC, git and files in a workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mainstem.commands import git
from mainstem.flow.queue_drain import batches_waiting
from mainstem.intake.delivery import READY
from mainstem.intake.submit import submit_to_queue
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from tests.conftest import ROOT


def _queue(workspace: Path, tmp_path: Path, spec: BatchSpec, name: str, at: float) -> None:
    """Deliver `spec` as queue entry `name`, its `_READY` dated `at` seconds from now."""
    folder = make_batch(tmp_path / "deliveries" / name, spec)
    incoming = load_params(workspace).ingest.incoming_dir
    entry, _ = submit_to_queue([folder], incoming, name)
    ready = incoming / entry / READY
    stamp = ready.stat().st_mtime + at
    os.utime(ready, (stamp, stamp))


def _drain(workspace: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "mainstem.cli", "process", "--drain", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )


def test_drain_takes_every_batch_oldest_first_past_a_duplicate_and_a_bad_one(
    workspace: Path, tmp_path: Path
) -> None:
    # submitted out of order; _READY's time decides
    _queue(workspace, tmp_path, BatchSpec(2, first_id=101, rows=20), "second", -30)
    _queue(workspace, tmp_path, BatchSpec(1, first_id=1, rows=20), "first", -40)
    _queue(
        workspace, tmp_path, BatchSpec(3, first_id=201, rows=20, drop_column="grade"), "bad", -20
    )
    _queue(workspace, tmp_path, BatchSpec(1, first_id=1, rows=20), "first-again", -10)
    params = load_params(workspace)
    assert batches_waiting(workspace)

    drained = _drain(workspace)

    assert drained.returncode == 3, drained.stderr  # one batch was rejected
    out = drained.stdout
    order = [out.index(f"{name} (") for name in ("first", "second", "bad", "first-again")]
    assert order == sorted(order), out
    assert "first-again (" in out
    assert "DUPLICATE" in out
    master = pd.read_parquet(params.merge.master_dir)
    assert sorted(master["item_id"]) == [*range(1, 21), *range(101, 121)]
    (quarantined,) = params.ingest.quarantine_dir.iterdir()
    assert (quarantined / "report.json").exists()
    assert (quarantined / "files" / "batch-003.csv").exists()
    left = sorted(p.name for p in params.ingest.incoming_dir.iterdir())
    assert left == [".claim-mutex"]
    assert not batches_waiting(workspace)
    subjects = git(["log", "--format=%s"], workspace).stdout.splitlines()
    assert sum("first-again" in s or "second" in s or "bad" in s for s in subjects) == 3
    assert "nothing ready" in _drain(workspace).stdout
