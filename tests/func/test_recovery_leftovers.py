"""What a killed run leaves behind, and who may clear it: git lock files, staging, scratch files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mainstem.durable import clear_staging, write_bytes
from mainstem.errors import LockError
from mainstem.flow.lineage import clear_stale_git_locks


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


GIT_AUTHOR = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "--quiet", str(root)], check=True)
    (root / "file.txt").write_text("content\n")
    subprocess.run(["git", "add", "file.txt"], cwd=root, check=True)
    return root


def test_git_lock_of_a_killed_git_is_removed(repo: Path) -> None:
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # what a git killed in the middle of a commit leaves

    assert clear_stale_git_locks(repo, wait=1.0) == [lock]
    assert not lock.exists()


def test_git_lock_of_a_running_git_is_left_alone(repo: Path) -> None:
    # A commit of given paths holds .git/index.lock while its hooks run; this hook takes its time.
    hook = repo / ".git" / "hooks" / "prepare-commit-msg"
    hook.write_text("#!/bin/sh\nsleep 30\n")
    hook.chmod(0o755)
    running = subprocess.Popen(
        [*GIT_AUTHOR, "commit", "-m", "x", "--", "file.txt"],
        cwd=repo,
        start_new_session=True,
    )
    lock = repo / ".git" / "index.lock"
    deadline = time.monotonic() + 20
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert lock.exists()
        with pytest.raises(LockError, match="git is still running"):
            clear_stale_git_locks(repo, wait=0.5)
        assert lock.exists()
    finally:
        os.killpg(running.pid, 9)
        running.wait()


def test_a_background_gc_does_not_hold_up_a_lineage_commit(repo: Path) -> None:
    # `git gc --auto`, detached after a commit, holds gc.log.lock while it runs: a git process at
    # work in the repository, whose lock no commit waits for
    gc_lock = repo / ".git" / "gc.log.lock"
    gc_lock.write_text("")
    running = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE)
    try:
        assert clear_stale_git_locks(repo, wait=0.5) == []
        assert gc_lock.exists()
    finally:
        running.kill()
        running.wait()


def test_staging_folders_and_dead_writers_scratch_files_are_cleared(tmp_path: Path) -> None:
    (tmp_path / ".master.parquet.next.staging").mkdir()
    (tmp_path / ".master.parquet.next.staging" / "part-0.parquet").write_bytes(b"x")
    dead = tmp_path / f".master.json.tmp-{_dead_pid()}"
    dead.write_bytes(b"half")
    live = tmp_path / f".master.json.tmp-{os.getppid()}"
    live.write_bytes(b"being written")
    output = tmp_path / "master.json"
    output.write_bytes(b"{}")

    removed = clear_staging(tmp_path)

    assert sorted(p.name for p in removed) == sorted([".master.parquet.next.staging", dead.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "master.json"])


def test_write_clears_the_scratch_file_a_killed_writer_left_for_the_same_path(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out" / "metrics.json"
    target.parent.mkdir()
    left = target.with_name(f".metrics.json.tmp-{_dead_pid()}")
    left.write_bytes(b"torn")

    write_bytes(target, b"{}\n")

    assert target.read_bytes() == b"{}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]
