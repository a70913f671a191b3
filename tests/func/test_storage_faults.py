"""Disk full, EIO on fsync, permission denied: a clear message, the master intact, the batch kept.

The tests run as root, and root ignores file modes, so each fault comes from a mechanism that
binds root too and fails the very system call a real fault fails:
- permission denied: `chattr +i` makes an entry immutable; the kernel then refuses to rename,
  replace or write it for every user, and access(2) reports it, as it reports a wrong owner or
  mode to an ordinary user (EPERM here, EACCES there: the same error path in mainstem);
- disk full: a small tmpfs mounted over the workspace's `data/`, filled up by the test;
- EIO on fsync: `fsync_eio.c`, compiled by the test and loaded with LD_PRELOAD into every process
  of the run (dvc, the stages, git), makes fsync() fail with EIO for the paths the test names,
  entering through the C library exactly where a failing disk's error does.
Each case ends with a MainstemError message and no traceback, a byte-identical master, and the
batch where it was: still waiting (a failed preflight claims nothing), or claimed, in which case
the next run, once the fault is gone, resumes it and applies it once.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pytest

from mainstem.errors import BatchFailedError, StorageError
from mainstem.flow.batch import process_next_batch, repro_args, run_dvc
from mainstem.intake.delivery import PROCESSING, READY
from mainstem.intake.dropfolder import Claimed, claim_batch
from mainstem.params import Params, load_params
from tests.func.prepared import SECOND, copy_setup, prepare, run_batch, tree

SHIM_SOURCE = Path(__file__).with_name("fsync_eio.c")
FAULT_ENV = "MAINSTEM_FAULT_FSYNC_EIO"
CLI = "import sys; from mainstem.cli import main; main(sys.argv[1:])"


@pytest.fixture(scope="module")
def template(workspace_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(tmp_path_factory.mktemp("faults"), workspace_template)


@pytest.fixture
def workspace(template: Path, tmp_path: Path) -> Path:
    return copy_setup(template, tmp_path / "setup")


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """`immutable(path)` sets the immutable attribute; it is cleared again after the test."""
    marked: list[Path] = []

    def mark(path: Path) -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _write_until_it_fails(handle: BinaryIO) -> None:
    while True:
        handle.write(b"\0" * 65536)
        handle.flush()


class SmallDisk:
    """A tmpfs mounted over a folder, holding what the folder held, with little room to spare."""

    def __init__(self, folder: Path, spare: int) -> None:
        self.folder = folder
        saved = folder.with_name(folder.name + ".saved")
        shutil.move(folder, saved)
        folder.mkdir()
        used = sum(p.stat().st_size + 4096 for p in saved.rglob("*"))
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={used + spare}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            folder.rmdir()
            shutil.move(saved, folder)
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        shutil.copytree(saved, folder, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(saved)

    def fill(self) -> None:
        """Take every free byte."""
        no_space = pytest.raises(OSError, match=os.strerror(errno.ENOSPC))
        with open(self.folder / "filler", "wb") as handle, no_space as full:
            _write_until_it_fails(handle)
        assert full.value.errno == errno.ENOSPC

    def grow(self) -> None:
        """Free the space: remove the filler and make the file system large."""
        (self.folder / "filler").unlink(missing_ok=True)
        subprocess.run(["mount", "-o", "remount,size=256m", str(self.folder)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], check=False)


@pytest.fixture
def small_data_disk(workspace: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(workspace / "data", spare=256 * 1024)
    yield disk
    disk.unmount()


@pytest.fixture(scope="session")
def eio_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fsync-fails-with-EIO library, compiled for this machine."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the fsync fault library")
    library = tmp_path_factory.mktemp("shim") / "fsync_eio.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE), "-ldl"],
        check=True,
    )
    return library


def _cli_process(workspace: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`mainstem process` in a child, as an operator or a scheduler would run it."""
    return subprocess.run(
        [sys.executable, "-c", CLI, "process", "--workspace", "."],
        cwd=workspace,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_second_applied_once(params: Params) -> None:
    master = pd.read_parquet(params.merge.master_dir)
    second_ids = range(SECOND.first_id, SECOND.first_id + SECOND.rows)
    assert master["item_id"].value_counts().reindex(second_ids).tolist() == [1] * SECOND.rows
    assert master["item_id"].is_unique
    assert params.ingest.incoming_dir.exists()
    assert not (params.ingest.incoming_dir / PROCESSING).exists()


def _assert_waiting(params: Params) -> None:
    incoming = params.ingest.incoming_dir
    assert (incoming / READY).exists()
    assert not (incoming / PROCESSING).exists()


def test_immutable_master_fails_preflight_and_the_batch_keeps_waiting(
    workspace: Path, immutable: Callable[[Path], None]
) -> None:
    params = load_params(workspace)
    master_before = tree(params.merge.master_dir)
    ticket_before = params.ingest.claimed_batch.read_bytes()
    immutable(params.merge.master_dir)

    with pytest.raises(StorageError, match=r"preflight: cannot write .*master\.parquet"):
        process_next_batch(workspace)

    _assert_waiting(params)
    assert tree(params.merge.master_dir) == master_before
    assert params.ingest.claimed_batch.read_bytes() == ticket_before


def test_immutable_master_fails_the_merge_with_a_message_and_the_next_run_resumes(
    workspace: Path, immutable: Callable[[Path], None]
) -> None:
    params = load_params(workspace)
    master_before = tree(params.merge.master_dir)
    claim = claim_batch(params.ingest, "run-1", time.time())
    assert isinstance(claim, Claimed)
    immutable(params.merge.master_dir)

    with pytest.raises(
        BatchFailedError, match=r"merge: error: .*operation not permitted"
    ) as failed:
        run_dvc(workspace, repro_args(), claim.batch_id)

    assert "Traceback" not in str(failed.value)
    assert tree(params.merge.master_dir) == master_before
    subprocess.run(["chattr", "-i", str(params.merge.master_dir)], check=True)
    assert isinstance(process_next_batch(workspace, run_id="run-1").claim, Claimed)
    _assert_second_applied_once(params)


def test_full_disk_fails_preflight_and_the_batch_keeps_waiting(
    workspace: Path, small_data_disk: SmallDisk
) -> None:
    params = load_params(workspace)
    master_before = tree(params.merge.master_dir)

    with pytest.raises(StorageError, match="the disk is full"):
        process_next_batch(workspace)

    _assert_waiting(params)
    assert tree(params.merge.master_dir) == master_before
    small_data_disk.grow()
    assert isinstance(process_next_batch(workspace).claim, Claimed)
    _assert_second_applied_once(params)


def test_full_disk_during_ingest_leaves_no_partial_snapshot_and_the_next_run_resumes(
    workspace: Path, small_data_disk: SmallDisk
) -> None:
    params = load_params(workspace)
    master_before = tree(params.merge.master_dir)
    claim = claim_batch(params.ingest, "run-1", time.time())
    assert isinstance(claim, Claimed)
    small_data_disk.fill()

    with pytest.raises(BatchFailedError, match=r"ingest: error: .*the disk is full"):
        run_dvc(workspace, repro_args(), claim.batch_id)

    assert not (params.ingest.raw_dir / claim.batch_id).exists()
    assert [p.name for p in params.ingest.raw_dir.parent.iterdir() if "staging" in p.name] == []
    assert tree(params.merge.master_dir) == master_before
    small_data_disk.grow()
    assert isinstance(process_next_batch(workspace, run_id="run-1").claim, Claimed)
    _assert_second_applied_once(params)


def test_eio_on_fsync_of_the_new_master_fails_with_a_message_and_the_next_run_resumes(
    workspace: Path, eio_shim: Path
) -> None:
    params = load_params(workspace)
    master_before = tree(params.merge.master_dir)
    incoming_before = tree(params.ingest.incoming_dir)

    failed = _cli_process(
        workspace, {"LD_PRELOAD": str(eio_shim), FAULT_ENV: ".master.parquet.next.staging"}
    )

    assert failed.returncode == 1
    assert "merge: error:" in failed.stderr
    assert "I/O error" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert tree(params.merge.master_dir) == master_before
    assert (params.ingest.incoming_dir / PROCESSING).exists()
    claimed_files = tree(params.ingest.incoming_dir)
    assert {k: v for k, v in claimed_files.items() if not k.startswith(("_", ".claim"))} == {
        k: v for k, v in incoming_before.items() if not k.startswith(("_", ".claim"))
    }
    recovery = run_batch(workspace, "recover")
    _out, err = recovery.communicate()
    assert recovery.returncode == 0, err
    _assert_second_applied_once(params)


def test_eio_in_preflight_claims_nothing(workspace: Path, eio_shim: Path) -> None:
    params = load_params(workspace)

    failed = _cli_process(
        workspace, {"LD_PRELOAD": str(eio_shim), FAULT_ENV: "/incoming/.claim-preflight"}
    )

    assert failed.returncode == 1
    assert "preflight: cannot write" in failed.stderr
    assert "I/O error" in failed.stderr
    assert "Traceback" not in failed.stderr
    _assert_waiting(params)
