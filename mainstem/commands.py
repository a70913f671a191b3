"""Running the `dvc` and `git` command-line tools with the right environment.

In: arguments and the workspace directory. Out: the completed process, or a CommandError that
carries the command and the tail of its output. Commands run with this virtualenv's `bin` first on
PATH (DVC stage commands call `python`) and with DVC's and MLflow's phone-home turned off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mainstem.errors import CommandError

QUIET_ENV = {"DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENV)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def run(
    args: list[str],
    cwd: Path,
    check: bool = True,
    extra_env: Mapping[str, str] | None = None,
    show_stderr: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command; its stdout is captured, and its stderr too unless `show_stderr`."""
    completed = subprocess.run(
        args,
        cwd=cwd,
        env=tool_env(extra_env),
        stdout=subprocess.PIPE,
        stderr=None if show_stderr else subprocess.PIPE,
        text=True,
        check=False,
    )
    if check and completed.returncode != 0:
        output = (completed.stderr or completed.stdout).strip().splitlines()
        tail = "\n".join(output[-15:])
        raise CommandError(
            f"`{' '.join(args)}` failed in {cwd} (exit {completed.returncode}):\n{tail}"
        )
    return completed


def dvc(
    args: list[str], cwd: Path, check: bool = True, show_progress: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `dvc ARGS`; with `show_progress`, DVC draws its own progress bars on our stderr."""
    return run([sys.executable, "-m", "dvc", *args], cwd, check, show_stderr=show_progress)


def git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["git", *args], cwd, check)


@contextmanager
def restored(names: Iterable[str]) -> Iterator[None]:
    """The environment variables `names` as they were before the block, whatever it set."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block (the processes it starts get them)."""
    with restored(values):
        os.environ.update(values)
        yield
