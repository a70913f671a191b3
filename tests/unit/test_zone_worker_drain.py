"""How long a stateless worker drains the S3 drop zone: `zone_worker.drain` with scripted claims."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mainstem.errors import MainstemError
from mainstem.flow.zone_worker import Drain, ZoneBatch, drain, settings_from_env
from mainstem.intake.dropfolder import Idle

FREE = Idle("nothing ready")
LEASED = Idle("held by another run", locked=True)


def _batch(n: int) -> ZoneBatch:
    return ZoneBatch(f"batch-{n:03d}", f"id{n}", "pushed", f"c{n}", float(n))


class Clock:
    """A clock that moves only when the drain sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _script(*answers: ZoneBatch | Idle) -> Callable[[], ZoneBatch | Idle]:
    queue = list(answers)
    return lambda: queue.pop(0)


def _drain(limits: Drain, *answers: ZoneBatch | Idle) -> tuple[list[str | None], Clock]:
    clock = Clock()
    done = drain(_script(*answers), limits, lambda: clock.now, clock.sleep)
    return [batch.name for batch in done], clock


def test_drain_takes_batches_until_none_is_ready() -> None:
    names, clock = _drain(Drain(), _batch(1), _batch(2), FREE)
    assert names == ["batch-001", "batch-002"]
    assert clock.slept == []


def test_drain_stops_at_max_batches() -> None:
    names, _ = _drain(Drain(max_batches=1), _batch(1), _batch(2), FREE)
    assert names == ["batch-001"]


def test_drain_leaves_a_leased_batch_when_told_not_to_wait() -> None:
    names, clock = _drain(Drain(), _batch(1), LEASED, _batch(2))
    assert names == ["batch-001"]
    assert clock.slept == []


def test_drain_waits_for_a_lease_to_expire_then_takes_the_batch() -> None:
    limits = Drain(lease_wait_seconds=30, poll_seconds=10)
    names, clock = _drain(limits, LEASED, LEASED, _batch(7), FREE)
    assert names == ["batch-007"]
    assert clock.slept == [10, 10]


def test_drain_gives_up_waiting_after_lease_wait_seconds() -> None:
    limits = Drain(lease_wait_seconds=25, poll_seconds=10)
    names, clock = _drain(limits, *[LEASED] * 5, _batch(1))
    assert names == []
    assert clock.now == 30


def test_a_worker_without_a_git_remote_is_told_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAINSTEM_GIT_REMOTE", raising=False)
    with pytest.raises(MainstemError, match="MAINSTEM_GIT_REMOTE"):
        settings_from_env()
