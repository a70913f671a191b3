"""What every unit test shares: no child processes, no disk flushes, a real MLflow SQLite store.

A unit test is pure: it starts no process (no git, no dvc, no fork), so the whole folder stays
fast. Every way Python starts one fails the test while it sets up, runs or tears down; a test
that needs a process belongs in `tests/func`.
"""

from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import platform
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any

import matplotlib.font_manager  # noqa: F401
import pytest

# matplotlib builds its font cache at its first import, asking `fc-list` (a process) when the
# machine has no cache yet, as a fresh CI home has not: build it now, before the guard below, so
# the first chart a unit test draws is pure.
# Everything in the standard library that starts a process ends in one of these: subprocess
# (run, Popen, os.popen, asyncio) in Popen._execute_child; multiprocessing's fork context, pty
# and os.spawn* in os.fork or os.forkpty; its spawn and forkserver contexts in fork_exec.
PROCESS_STARTS: dict[str, tuple[Any, str]] = {
    "subprocess.Popen": (subprocess.Popen, "_execute_child"),
    "multiprocessing spawn or forkserver": (_posixsubprocess, "fork_exec"),
    "os.fork": (os, "fork"),
    "os.forkpty": (os, "forkpty"),
    "os.posix_spawn": (os, "posix_spawn"),
    "os.posix_spawnp": (os, "posix_spawnp"),
    "os.system": (os, "system"),
}


def _refuse(name: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        pytest.fail(
            f"a unit test started a process ({name}); unit tests are pure: "
            "move this test to tests/func"
        )

    return refused


@contextlib.contextmanager
def processes_refused() -> Iterator[None]:
    """Within this block, every start of a process fails the running test."""
    with pytest.MonkeyPatch.context() as patch:
        for name, (owner, attribute) in PROCESS_STARTS.items():
            patch.setattr(owner, attribute, _refuse(name))
        # croniter, which Airflow imports lazily (sometimes first inside a test), calls
        # platform.architecture() at import, which asks the `file` command about the interpreter;
        # the probe falls back to its defaults when `file` answers nothing, so answer nothing.
        patch.setattr(platform, "_syscmd_file", lambda target, default="": default)
        yield


# Hook wrappers rather than an autouse fixture, so that the session and module fixtures a unit
# test sets up are held to the rule too. Pytest calls them for the items of this folder only.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    with processes_refused():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with processes_refused():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    with processes_refused():
        return (yield)


@pytest.fixture(autouse=True)
def no_disk_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes reach the page cache but are never flushed to the disk.

    A unit test checks what is written; whether it survives a crash is for tests/func, which
    kill real runs. On a virtual disk each fsync costs milliseconds, and a merge fsyncs every part.
    """
    monkeypatch.setattr(os, "fsync", _no_flush)


def _no_flush(fd: int) -> None:
    os.fstat(fd)  # a closed or bad descriptor still fails, as it would in fsync
