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

A batch the contract rejects takes the same path up to the lineage commit; after it, its release
moves the files to quarantine instead of removing them. A second sweep covers that segment of a
rejected batch's trace: the recovery must leave the quarantine exactly as a clean run does.

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
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.func.prepared import REJECTED, SECOND, copy_setup, prepare, run_batch, tree
from tests.openlineage_events import badly_ended, read_run_files

PARALLEL_CASES = 2


@dataclass(frozen=True)
class Sweep:
    base: Path
    template: Path  # holds workspace/ (FIRST processed, a second batch waiting) and remote/
    labels: list[str]
    expected: Path  # the template's workspace after a clean run of the waiting batch


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


def _prepare(base: Path, waiting: BatchSpec) -> Sweep:
    # the waiting batch is a queue entry, as `mainstem submit` delivers it: its claim, release
    # and quarantine act on its own folder
    template = prepare(base, waiting=waiting, queued=True)
    expected = copy_setup(template, base / "expected")
    counter = base / "clean.count"
    trace = base / "clean.trace"
    child = run_batch(
        expected, "clean", {crashpoints.COUNTER: str(counter), crashpoints.TRACE: str(trace)}
    )
    _out, err = child.communicate()
    assert child.returncode == 0, err
    return Sweep(base, template, crashpoints.read_trace(trace), expected)


SWEEPS = {"accepted": SECOND, "rejected": REJECTED}
SWEEP = pytest.StashKey[dict[str, Sweep]]()


def _sweep(config: pytest.Config, kind: str) -> Sweep:
    """The prepared workspace and the clean run's trace for `kind`, built once per session."""
    sweeps = config.stash.setdefault(SWEEP, {})
    if kind not in sweeps:
        base = Path(tempfile.mkdtemp(prefix=f"mainstem-crash-{kind}-"))
        config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))
        sweeps[kind] = _prepare(base, SWEEPS[kind])
    return sweeps[kind]


def release_segment(labels: list[str]) -> range:
    """The write points from the publish of master_rows on: where a rejected batch differs."""
    return range(labels.index("publish master_rows") + 1, len(labels) + 1)


def _ids(labels: list[str], points: range) -> list[str]:
    return [f"{k:02d}-{labels[k - 1].replace(' ', '_')[:32]}" for k in points]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "write_point" in metafunc.fixturenames:
        labels = _sweep(metafunc.config, "accepted").labels
        points = range(1, len(labels) + 1)
        metafunc.parametrize("write_point", points, ids=_ids(labels, points))
    if "rejected_write_point" in metafunc.fixturenames:
        labels = _sweep(metafunc.config, "rejected").labels
        points = release_segment(labels)
        metafunc.parametrize("rejected_write_point", points, ids=_ids(labels, points))


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

    def __init__(self, jobs: list[tuple[Sweep, int]]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_CASES)
        self._futures: dict[tuple[Path, int], Future[Case]] = {
            (sweep.base, k): self._pool.submit(crash_and_recover, sweep, k) for sweep, k in jobs
        }

    def result(self, sweep: Sweep, k: int) -> Case:
        return self._futures[(sweep.base, k)].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def sweep(request: pytest.FixtureRequest) -> Sweep:
    return _sweep(request.config, "accepted")


@pytest.fixture
def rejected_sweep(request: pytest.FixtureRequest) -> Sweep:
    return _sweep(request.config, "rejected")


@pytest.fixture(scope="module")
def cases(request: pytest.FixtureRequest) -> Iterator[CasePool]:
    """Every selected case of this module, queued at once, in the order the tests will ask."""
    jobs = []
    for item in request.session.items:
        params = getattr(item, "callspec", None)
        if not isinstance(item, pytest.Function) or params is None:
            continue
        for name, kind in (("write_point", "accepted"), ("rejected_write_point", "rejected")):
            if name in params.params:
                jobs.append((_sweep(request.config, kind), params.params[name]))
    pool = CasePool(jobs)
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
        "publish pack",
        "ingest index",
        "stage ingest done",
        "validated cache",
        "publish batch",
        "validated index",
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
    case = cases.result(sweep, write_point)
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
    raw_after = tree(load_params(sweep.expected).ingest.raw_dir)
    assert tree(params.ingest.raw_dir) == raw_after  # the pack and every index record
    validated_after = tree(load_params(sweep.expected).validate.validated_dir)
    assert tree(params.validate.validated_dir) == validated_after  # batch/ and the index
    for relative in ("metrics/master.json", "metrics/validate.json", "dvc.lock"):
        assert (workspace / relative).read_bytes() == (sweep.expected / relative).read_bytes()
    assert _last_message(workspace) == _last_message(sweep.expected)
    assert _commits(workspace) == _commits(sweep.expected)
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert sorted(p.name for p in params.ingest.incoming_dir.iterdir()) == [".claim-mutex"]
    assert _leftovers(workspace) == []
    assert "up to date" in dvc(["status"], workspace).stdout
    # a stage run the crash killed ends with ABORT when the stage runs again: no START left open
    events = read_run_files(workspace / "lineage" / "openlineage")
    assert badly_ended(events) == {}
    if case.fired.startswith("stage "):
        assert "ABORT" in {e["eventType"] for e in events}


def test_rejected_batch_passes_the_quarantine_write_points(rejected_sweep: Sweep) -> None:
    tail = [rejected_sweep.labels[k - 1] for k in release_segment(rejected_sweep.labels)]
    assert {"quarantine move", "quarantine move manifest", "release lock"} <= set(tail)


def test_crash_while_a_rejected_batch_is_quarantined_then_recovery_finishes_it(
    rejected_sweep: Sweep, cases: CasePool, rejected_write_point: int
) -> None:
    sweep = rejected_sweep
    case = cases.result(sweep, rejected_write_point)
    workspace = case.workspace
    params = load_params(workspace)
    expected = load_params(sweep.expected)

    assert case.crash_returncode == -signal.SIGKILL, case.crash_stderr
    assert case.fired == sweep.labels[rejected_write_point - 1]
    assert case.recovery_returncode == 0, case.recovery_stderr

    assert tree(params.merge.master_dir) == tree(expected.merge.master_dir)
    assert tree(params.ingest.quarantine_dir) == tree(expected.ingest.quarantine_dir)
    assert _last_message(workspace) == _last_message(sweep.expected)
    assert _commits(workspace) == _commits(sweep.expected)
    assert sorted(p.name for p in params.ingest.incoming_dir.iterdir()) == [".claim-mutex"]
    assert _leftovers(workspace) == []
    assert "up to date" in dvc(["status"], workspace).stdout
