"""A unit test that starts a process fails, whichever way it starts it.

Were the guard in conftest.py to let one through, each start below is harmless: a child of a fork
leaves at once, and the others run `true`.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import pty
import subprocess
from collections.abc import Callable

import pytest


def _fork() -> None:
    if os.fork() == 0:
        os._exit(0)


def _forkpty() -> None:
    pid, _fd = pty.fork()
    if pid == 0:
        os._exit(0)


def _spawn_context() -> None:
    multiprocessing.get_context("spawn").Process(target=int).start()


STARTS: dict[str, Callable[[], object]] = {
    "subprocess.run": lambda: subprocess.run(["true"], check=True),
    "os.popen": lambda: os.popen("true").close(),
    "os.fork": _fork,
    "pty.fork": _forkpty,
    "os.posix_spawn": lambda: os.posix_spawn("/bin/true", ["true"], {}),
    "os.posix_spawnp": lambda: os.posix_spawnp("true", ["true"], {}),
    "os.spawnlp": lambda: os.spawnlp(os.P_WAIT, "true", "true"),
    "os.system": lambda: os.system("true"),
    "multiprocessing fork": lambda: multiprocessing.get_context("fork").Process(target=int).start(),
    "multiprocessing spawn": _spawn_context,
}


@pytest.mark.parametrize("start", list(STARTS.values()), ids=list(STARTS))
def test_starting_a_process_fails_the_unit_test(start: Callable[[], object]) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"move this test to tests/func"):
        start()


def test_the_interpreter_probe_that_airflow_triggers_starts_no_process() -> None:
    """croniter, imported by Airflow, calls platform.architecture(), which would run `file`."""
    bits, _ = platform.architecture()
    assert bits.endswith("bit")
