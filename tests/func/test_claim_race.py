"""Claimants racing in real processes: for a ready batch and for a dead holder's lock, one wins."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from dataclasses import asdict, replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from mainstem import crashpoints
from mainstem.intake import lock
from mainstem.intake.dropfolder import Claimed, claim_batch
from mainstem.intake.submit import submit
from mainstem.params import IngestParams
from tests.conftest import ingest_params

CLAIMANTS = 6
ROUNDS = 5
FORK = multiprocessing.get_context("fork")


def _params(root: Path) -> IngestParams:
    return ingest_params(root)


def _deliver(params: IngestParams, source: Path) -> None:
    source.mkdir(parents=True)
    (source / "table.csv").write_text("item_id\n1\n2\n")
    submit([source], params.incoming_dir, "race")


def _claimant(
    params: IngestParams, run_id: str, start: Barrier, done: Barrier, out: Connection
) -> None:
    start.wait()
    result = claim_batch(params, run_id, time.time())
    out.send((run_id, type(result).__name__, getattr(result, "recovered_from", None) is not None))
    # Stay alive until every claimant has tried: a winner that exited would be a dead holder,
    # whose lock a slower claimant rightly recovers.
    done.wait()


def _race(params: IngestParams) -> list[tuple[str, str, bool]]:
    """Start CLAIMANTS processes that call claim_batch at the same moment; what each got."""
    start = FORK.Barrier(CLAIMANTS)
    done = FORK.Barrier(CLAIMANTS)
    pipes = [FORK.Pipe(duplex=False) for _ in range(CLAIMANTS)]
    workers = [
        FORK.Process(target=_claimant, args=(params, f"run-{i}", start, done, send))
        for i, (_recv, send) in enumerate(pipes)
    ]
    for worker in workers:
        worker.start()
    results = [recv.recv() for recv, _send in pipes]
    for worker in workers:
        worker.join(timeout=30)
    return results


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_racing_claimants_of_a_ready_batch_exactly_one_wins(tmp_path: Path, round_: int) -> None:
    params = _params(tmp_path)
    _deliver(params, tmp_path / "source")

    results = _race(params)

    winners = [run_id for run_id, kind, _recovered in results if kind == Claimed.__name__]
    assert len(winners) == 1, results
    assert sorted(kind for _r, kind, _x in results) == ["Claimed"] + ["Idle"] * (CLAIMANTS - 1)
    holder = lock.read_owner(params.incoming_dir)
    assert holder is not None
    assert holder.run_id == winners[0]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_racing_recoveries_of_a_dead_holders_lock_exactly_one_wins(
    tmp_path: Path, round_: int
) -> None:
    params = _params(tmp_path)
    _deliver(params, tmp_path / "source")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first = claim_batch(params, "dead-run", time.time())
    assert isinstance(first, Claimed)
    # The holder's process is gone: its pid no longer runs what claimed the batch.
    dead_owner = replace(first.owner, pid=dead.pid, pid_started=1.0)
    lock.lock_path(params.incoming_dir).write_text(json.dumps(asdict(dead_owner)))
    assert lock.owner_alive(dead_owner) is False

    results = _race(params)

    winners = [(run_id, recovered) for run_id, kind, recovered in results if kind == "Claimed"]
    assert len(winners) == 1, results
    assert winners[0][1] is True
    holder = lock.read_owner(params.incoming_dir)
    assert holder is not None
    assert holder.run_id == winners[0][0]


def _slow_rescuer(params: IngestParams, paused: Connection, done: Barrier, out: Connection) -> None:
    """A claimant that stops for a second between judging the lock stale and taking it."""

    def pause_before_taking_over(label: str) -> None:
        if label == "take over stale lock":
            paused.send(True)
            time.sleep(1.0)

    crashpoints.reach = pause_before_taking_over  # type: ignore[assignment]
    result = claim_batch(params, "slow", time.time())
    out.send(type(result).__name__)
    done.wait()


def _quick_rescuer(params: IngestParams, done: Barrier, out: Connection) -> None:
    out.send(type(claim_batch(params, "quick", time.time())).__name__)
    done.wait()


def test_recovery_paused_after_its_staleness_check_cannot_take_a_fresh_lock(
    tmp_path: Path,
) -> None:
    params = _params(tmp_path)
    _deliver(params, tmp_path / "source")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first = claim_batch(params, "dead-run", time.time())
    assert isinstance(first, Claimed)
    dead_owner = replace(first.owner, pid=dead.pid, pid_started=1.0)
    lock.lock_path(params.incoming_dir).write_text(json.dumps(asdict(dead_owner)))
    paused_recv, paused_send = FORK.Pipe(duplex=False)
    slow_recv, slow_send = FORK.Pipe(duplex=False)
    quick_recv, quick_send = FORK.Pipe(duplex=False)
    done = FORK.Barrier(2)
    slow = FORK.Process(target=_slow_rescuer, args=(params, paused_send, done, slow_send))
    slow.start()
    assert paused_recv.poll(30), "the slow rescuer never reached its takeover"
    quick = FORK.Process(target=_quick_rescuer, args=(params, done, quick_send))
    quick.start()

    outcomes = sorted([slow_recv.recv(), quick_recv.recv()])
    slow.join(30)
    quick.join(30)

    assert outcomes == ["Claimed", "Idle"]
