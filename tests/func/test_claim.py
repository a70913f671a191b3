"""The claim against processes that really ended: a dead owner, a dead claimant's scratch file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mainstem.intake import lock
from mainstem.intake.delivery import READY
from mainstem.intake.dropfolder import Claimed, claim_batch
from mainstem.intake.submit import submit
from mainstem.params import IngestParams
from tests.conftest import ingest_params


@pytest.fixture
def params(tmp_path: Path) -> IngestParams:
    return ingest_params(tmp_path)


def _deliver(params: IngestParams, folder: Path) -> float:
    """Submit a one-image batch built in `folder`; the mtime of its `_READY`."""
    (folder / "images").mkdir(parents=True)
    (folder / "table.csv").write_text("item_id,image_file\n1,images/a.png\n")
    (folder / "images" / "a.png").write_bytes(b"image bytes of a" * 50)
    submit([folder], params.incoming_dir)
    return (params.incoming_dir / READY).stat().st_mtime


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_unreaped_owner_process_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.01)
    owner = lock.LockOwner("gone", socket.gethostname(), child.pid, time.time(), 0.0, 0.0)
    try:
        assert lock.owner_alive(owner) is False
    finally:
        child.wait()


def test_dead_claimants_scratch_files_are_cleared_by_the_next_claim(
    params: IngestParams, tmp_path: Path
) -> None:
    now = _deliver(params, tmp_path / "b1")
    host = socket.gethostname()
    dead = params.incoming_dir / f".claim-{host}-{_dead_pid()}"
    dead.write_text("{}")
    live = params.incoming_dir / f".claim-{host}-{os.getppid()}"
    live.write_text("{}")

    assert isinstance(claim_batch(params, "run-1", now), Claimed)

    assert not dead.exists()
    assert live.exists()
