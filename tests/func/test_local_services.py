"""Process records: `stack down` stops what `stack up` started, and never a recycled pid."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from mainstem.local.services import ProcessRecord, end_child, port_is_free


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A shell leading its own session, with a child of its own, as the services run."""
    process = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    deadline = time.monotonic() + 30
    while not psutil.Process(process.pid).children() and time.monotonic() < deadline:
        time.sleep(0.01)  # the shell forks its child a moment after it starts
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_stop_ends_the_process_and_its_children(group: subprocess.Popen[bytes]) -> None:
    record = ProcessRecord.of("service", group.pid)
    [child] = psutil.Process(group.pid).children()
    assert record.alive()
    record.stop(grace=5)
    assert not record.alive()
    assert group.poll() is not None
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_record_of_another_start_time_is_not_signalled(group: subprocess.Popen[bytes]) -> None:
    recycled = ProcessRecord("service", group.pid, ProcessRecord.of("x", group.pid).started - 100)
    assert not recycled.alive()
    recycled.stop(grace=1)
    assert group.poll() is None  # the process now holding that pid was left alone


def test_a_record_still_stops_its_process_after_the_clock_steps(
    group: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux moves its boot time when the wall clock is stepped (NTP, a resumed VM)."""
    from psutil import _pslinux

    record = ProcessRecord.of("service", group.pid)
    stepped = _pslinux.boot_time() + 3600.0
    monkeypatch.setattr(_pslinux, "boot_time", lambda: stepped)
    assert record.alive()
    record.stop(grace=5)
    assert group.poll() is not None


def test_a_child_whose_record_no_longer_matches_is_killed_not_waited_on(
    group: subprocess.Popen[bytes],
) -> None:
    stale = ProcessRecord("service", group.pid, ProcessRecord.of("x", group.pid).started - 100)
    end_child(group, stale, wait=0.5)
    assert group.returncode is not None


def test_a_port_with_a_listener_is_taken() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)
    assert port_is_free(port)
