"""Crash anywhere, lose nothing, apply nothing twice: SIGKILL the batch path at every write point.

A traced clean run lists the write points the batch path passes: the claim, each file move, each
DVC stage's writes and its end, the dvc commands, the master and metrics writes, the lineage commit
(and a point inside `git commit`, through a hook), the publish of `master_rows` and the release.
For every k, a copy of one prepared workspace runs `process_next_batch` in a session of its own
until write point k kills the whole process group (so a kill inside a stage also takes `dvc`
down before it writes `dvc.lock`). Then an ordinary run recovers, and the workspace must end up
exactly as after the clean run: the same master bytes, metrics, `dvc.lock` and lineage message,
one lineage commit, an empty drop folder with no lock, nothing half-built left over, and a clean
`dvc status`. The trace is taken while the tests are collected, so a new write point in the code
is a new test case without anyone listing it.

Cost: each case is a partial run, a recovery run and the checks, about 9 CPU-seconds, mostly the
start-up of `dvc` and of the stage interpreters. The prepared workspace is built once and copied
per case, and the crash-and-recover work of the selected cases runs two at a time in the
background (one per core) while each test checks its own finished case, so the sweep stays
complete and takes about half its serial time.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mainstem import crashpoints
from mainstem.commands import dvc, git
from mainstem.params import load_params
from tests.e2e.prepared import SECOND, copy_setup, prepare, run_batch, tree

PARALLEL_CASES = 2


@dataclass(frozen=True)
class Sweep:
    base: Path
    template: Path  # holds workspace/ (FIRST processed, SECOND waiting) and remote/
    labels: list[str]
    expected: Path  # the template after a clean run of SECOND


@dataclass(frozen=True)
class Case:
    """What one crash at write point k did, and the workspace after the recovery run."""

    workspace: Path
    crash_returncode: int
    crash_stderr: str
    fired: str
    master_after_crash: dict[str, bytes]
    recovery_returncode: int
    recovery_stderr: str


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """Until every process of the killed group is gone (orphans are reaped by init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {pgid} still alive after {timeout} s")


def _prepare(base: Path) -> Sweep:
    template = prepare(base)
    expected = copy_setup(template, base / "expected")
    counter = base / "clean.count"
    trace = base / "clean.trace"
    child = run_batch(
        expected, "clean", {crashpoints.COUNTER: str(counter), crashpoints.TRACE: str(trace)}
    )
    _out, err = child.communicate()
    assert child.returncode == 0, err
    return Sweep(base, template, crashpoints.read_trace(trace), expected)


SWEEP = pytest.StashKey[Sweep]()


def _sweep(config: pytest.Config) -> Sweep:
    """The prepared workspace and the clean run's trace, built once per session."""
    if SWEEP not in config.stash:
        base = Path(tempfile.mkdtemp(prefix="mainstem-crash-"))
        config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))
        config.stash[SWEEP] = _prepare(base)
    return config.stash[SWEEP]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "write_point" in metafunc.fixturenames:
        labels = _sweep(metafunc.config).labels
        metafunc.parametrize(
            "write_point",
            range(1, len(labels) + 1),
            ids=[f"{k:02d}-{label.replace(' ', '_')[:32]}" for k, label in enumerate(labels, 1)],
        )


def crash_and_recover(sweep: Sweep, k: int) -> Case:
    """Kill a copy of the prepared workspace's batch run at write point k, then run it again."""
    workspace = copy_setup(sweep.template, sweep.base / f"case-{k:03d}")
    counter = workspace.parent / "crash.count"
    crashed = run_batch(
        workspace,
        f"crash-{k}",
        {
            crashpoints.COUNTER: str(counter),
            crashpoints.CRASH_AT: str(k),
            crashpoints.KILL_GROUP: "1",
        },
    )
    _out, crash_err = crashed.communicate()
    _wait_group_gone(crashed.pid)
    fired = counter.with_suffix(".fired")
    master_dir = load_params(workspace).merge.master_dir
    master_after_crash = tree(master_dir)
    pd.read_parquet(master_dir)
    recovery = run_batch(workspace, f"recover-{k}", {})
    _out, recovery_err = recovery.communicate()
    return Case(
        workspace,
        crashed.returncode,
        crash_err,
        fired.read_text().split("\t", 1)[1].strip() if fired.exists() else "",
        master_after_crash,
        recovery.returncode,
        recovery_err,
    )


class CasePool:
    """Crash-and-recover jobs for the selected write points, run PARALLEL_CASES at a time."""

    def __init__(self, sweep: Sweep, selected: list[int]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_CASES)
        self._futures: dict[int, Future[Case]] = {
            k: self._pool.submit(crash_and_recover, sweep, k) for k in selected
        }

    def result(self, k: int) -> Case:
        return self._futures[k].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def sweep(request: pytest.FixtureRequest) -> Sweep:
    return _sweep(request.config)


@pytest.fixture(scope="module")
def cases(request: pytest.FixtureRequest) -> Iterator[CasePool]:
    selected = [
        item.callspec.params["write_point"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "write_point" in item.callspec.params
    ]
    pool = CasePool(_sweep(request.config), selected)
    yield pool
    pool.close()


def _leftovers(workspace: Path) -> list[str]:
    """Staging folders and scratch files anywhere outside .git and .dvc."""
    found = []
    for path in workspace.rglob("*"):
        rel = path.relative_to(workspace)
        if rel.parts[0] in (".git", ".dvc"):
            continue
        if path.name.endswith(".staging") or ".tmp-" in path.name:
            found.append(rel.as_posix())
    return sorted(found)


def _last_message(workspace: Path) -> str:
    return git(["log", "-1", "--format=%B"], workspace).stdout


def _commits(workspace: Path) -> int:
    return int(git(["rev-list", "--count", "HEAD"], workspace).stdout)


def test_clean_run_passes_every_kind_of_write_point(sweep: Sweep) -> None:
    kinds = [
        "claim lock",
        "claim ticket",
        "dvc repro",
        "ingest copy",
        "stage ingest done",
        "stage validate done",
        "master write part",
        "publish master.parquet",
        "replace master.json",
        "stage merge done",
        "lock heartbeat",
        "dvc push",
        "lineage commit",
        "inside git commit",
        "publish master_rows",
        "release remove file",
        "release lock",
    ]
    assert [kind for kind in kinds if kind not in sweep.labels] == []


def test_crash_at_write_point_then_recovery_applies_the_batch_once(
    sweep: Sweep, cases: CasePool, write_point: int
) -> None:
    case = cases.result(write_point)
    workspace = case.workspace
    params = load_params(workspace)
    master_before = tree(load_params(sweep.template / "workspace").merge.master_dir)
    master_after = tree(load_params(sweep.expected).merge.master_dir)

    assert case.crash_returncode == -signal.SIGKILL, case.crash_stderr
    assert case.fired == sweep.labels[write_point - 1]
    assert case.master_after_crash in (master_before, master_after)
    assert case.recovery_returncode == 0, case.recovery_stderr

    master = pd.read_parquet(params.merge.master_dir)
    second_ids = range(SECOND.first_id, SECOND.first_id + SECOND.rows)
    assert master["item_id"].value_counts().reindex(second_ids).tolist() == [1] * SECOND.rows
    assert tree(params.merge.master_dir) == master_after
    for relative in ("metrics/master.json", "metrics/validate.json", "dvc.lock"):
        assert (workspace / relative).read_bytes() == (sweep.expected / relative).read_bytes()
    assert _last_message(workspace) == _last_message(sweep.expected)
    assert _commits(workspace) == _commits(sweep.expected)
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert sorted(p.name for p in params.ingest.incoming_dir.iterdir()) == [".claim-mutex"]
    assert _leftovers(workspace) == []
    assert "up to date" in dvc(["status"], workspace).stdout
