"""A process is known by its pid and start, and a step of the wall clock does not change that.

Linux moves its boot time, and so psutil's wall-clock `create_time`, whenever the clock is stepped
(NTP, a resumed VM). The step is simulated here by moving psutil's boot time an hour on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace

import psutil
import pytest

from mainstem.intake import lock, process_start

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Step the wall clock an hour on, as far as psutil can tell."""
    from psutil import _pslinux

    def step() -> None:
        stepped = _pslinux.boot_time() + 3600.0
        monkeypatch.setattr(_pslinux, "boot_time", lambda: stepped)

    return step


def test_a_start_recorded_before_a_clock_step_still_names_its_process(
    step_clock: Callable[[], None],
) -> None:
    recorded = process_start.started(os.getpid())
    assert recorded > 0.0
    step_clock()
    assert process_start.is_same_process(os.getpid(), recorded)


def test_a_live_lock_owner_stays_alive_across_a_clock_step(step_clock: Callable[[], None]) -> None:
    owner = lock.owner_for("run", now=1000.0)
    step_clock()
    assert lock.owner_alive(owner) is True
    assert lock.owner_alive(replace(owner, pid_started=owner.pid_started - 50.0)) is False


def test_the_start_is_psutils_own_counted_from_boot() -> None:
    since_boot = psutil.Process().create_time() - psutil.boot_time()
    assert process_start.started(os.getpid()) == pytest.approx(since_boot, abs=0.05)


def test_a_record_from_an_older_release_holds_a_wall_clock_start() -> None:
    wall_clock = psutil.Process().create_time()
    assert process_start.is_same_process(os.getpid(), wall_clock)
    assert not process_start.is_same_process(os.getpid(), wall_clock - 50.0)


def test_a_pid_nobody_holds_has_no_start() -> None:
    with open("/proc/sys/kernel/pid_max") as limit:
        pid_max = int(limit.read())
    free = next(pid for pid in range(pid_max - 1, 1, -1) if not psutil.pid_exists(pid))
    assert process_start.started(free) == 0.0
    assert not process_start.is_same_process(free, 1.0)


def test_a_start_one_tick_apart_is_another_process() -> None:
    """Ticks are exact, so a pid reused after a reboot at a nearby time since boot does not pass."""
    recorded = process_start.started(os.getpid())
    assert process_start.is_same_process(os.getpid(), recorded)
    assert not process_start.is_same_process(os.getpid(), recorded + process_start.TICK)
    assert not process_start.is_same_process(os.getpid(), recorded - process_start.TICK)
