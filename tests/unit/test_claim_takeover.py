"""When another run may take over a held lock: a gone one-process holder and a run that gave up
at once, a run between two of its Airflow tasks after the grace, a live holder only when silent."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from mainstem.intake import lock
from mainstem.intake.dropfolder import Claimed, Idle, claim_batch
from mainstem.intake.submit import submit
from mainstem.params import IngestParams
from tests.conftest import ingest_params

GRACE = 120
SILENCE = 3600


@pytest.fixture
def params(tmp_path: Path) -> IngestParams:
    return ingest_params(tmp_path, stale=SILENCE, grace=GRACE)


def _claimed(params: IngestParams, tmp_path: Path, one_process: bool) -> Claimed:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "table.csv").write_text("item_id\n1\n")
    submit([folder], params.incoming_dir, "b1")
    claimed = claim_batch(params, "first", 1000.0, one_process)
    assert isinstance(claimed, Claimed)
    return claimed


def _holder_gone(params: IngestParams, owner: lock.LockOwner) -> lock.LockOwner:
    """Rewrite the lock as if its pid now ran another program (started at another time)."""
    gone = replace(owner, pid_started=owner.pid_started - 50.0)
    lock.lock_path(params.incoming_dir).write_text(json.dumps(asdict(gone)))
    assert lock.owner_alive(gone) is False
    return gone


def test_a_gone_one_process_holder_is_taken_over_at_once(
    params: IngestParams, tmp_path: Path
) -> None:
    first = _claimed(params, tmp_path, one_process=True)
    gone = _holder_gone(params, first.owner)

    second = claim_batch(params, "second", 1001.0, one_process=True)

    assert isinstance(second, Claimed)
    assert second.resumed
    assert second.recovered_from == gone


def test_a_holder_between_two_tasks_keeps_its_lock_through_the_grace(
    params: IngestParams, tmp_path: Path
) -> None:
    first = _claimed(params, tmp_path, one_process=False)
    _holder_gone(params, first.owner)

    waiting = claim_batch(params, "second", 1000.0 + GRACE - 1)
    assert isinstance(waiting, Idle)
    assert waiting.locked
    assert "may take it over from 1970-01-01T00:18:40+00:00, 120 s after" in waiting.reason

    later = claim_batch(params, "second", 1000.0 + GRACE + 1)
    assert isinstance(later, Claimed)
    assert later.resumed


def test_a_given_up_lock_is_resumed_at_once_though_its_process_lives(
    params: IngestParams, tmp_path: Path
) -> None:
    first = _claimed(params, tmp_path, one_process=True)
    assert lock.owner_alive(first.owner) is True
    blocked = claim_batch(params, "second", 1001.0)
    assert isinstance(blocked, Idle)
    assert blocked.locked

    assert lock.give_up(params.incoming_dir, "first")
    second = claim_batch(params, "second", 1002.0)

    assert isinstance(second, Claimed)
    assert second.resumed
    assert second.batch_id == first.batch_id
    holder = lock.read_owner(params.incoming_dir)
    assert holder is not None
    assert holder.run_id == "second"
    assert not holder.given_up


def test_giving_up_leaves_another_runs_lock_alone(params: IngestParams, tmp_path: Path) -> None:
    first = _claimed(params, tmp_path, one_process=True)

    assert not lock.give_up(params.incoming_dir, "someone-else")

    assert lock.read_owner(params.incoming_dir) == first.owner


def test_the_same_run_resuming_a_given_up_lock_holds_it_again(
    params: IngestParams, tmp_path: Path
) -> None:
    _claimed(params, tmp_path, one_process=True)
    lock.give_up(params.incoming_dir, "first")

    again = claim_batch(params, "first", 1001.0)

    assert isinstance(again, Claimed)
    assert again.resumed
    assert not again.owner.given_up
    blocked = claim_batch(params, "second", 1002.0)
    assert isinstance(blocked, Idle)
    assert blocked.locked


@pytest.mark.parametrize(
    ("alive", "one_process", "given_up", "stale_from"),
    [
        (True, True, False, 1000.0 + SILENCE),
        (True, False, False, 1000.0 + SILENCE),
        (True, True, True, 0.0),
        (False, True, False, 0.0),
        (False, False, False, 1000.0 + GRACE),
        (False, False, True, 0.0),
    ],
)
def test_when_a_lock_may_be_taken_over(
    alive: bool, one_process: bool, given_up: bool, stale_from: float
) -> None:
    owner = lock.owner_for("run", 1000.0, "b1", one_process)
    if not alive:
        owner = replace(owner, pid_started=owner.pid_started - 50.0)
    owner = replace(owner, given_up=given_up)
    assert lock.stale_from(owner, SILENCE, GRACE) == stale_from


def test_a_lock_written_before_these_fields_keeps_the_grace(params: IngestParams) -> None:
    params.incoming_dir.mkdir()
    old = asdict(lock.owner_for("old", 1000.0, "b1"))
    del old["one_process"], old["given_up"]
    old["pid_started"] -= 50.0
    lock.lock_path(params.incoming_dir).write_text(json.dumps(old))

    holder = lock.read_owner(params.incoming_dir)

    assert holder is not None
    assert not holder.one_process
    assert not holder.given_up
    assert lock.state_of(holder, "new", 1000.0 + GRACE - 1, SILENCE, GRACE) == "live"
