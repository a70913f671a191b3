"""A warm interpreter for the stage commands of one `dvc repro`.

In: the stage commands DVC starts (`python -m mainstem.openlineage.stage_run NAME`, see dvc.yaml)
while a batch process holds a host open (`stage_host`). Out: each stage run in a child forked from
the host, with the command's arguments, directory, environment, import path and standard streams;
the command ends as that child ended, with its exit status or its signal.

Why: a fresh interpreter spends 0.2 to 1.3 s of CPU importing pandas, pyarrow, pandera and DVC
before a stage does any work, and a batch runs three stages. The host imports them once, while DVC
loads its pipeline, and reads the pipeline once through DVC itself, so the parsers each stage's
dataset description needs are built before the stage is forked. DVC still starts, waits for and
records every stage as its own command: only the imports and DVC's parsers are shared. Without a
host (`dvc repro` by hand, `MAINSTEM_WARM_STAGES=0`, a host that cannot be reached, or one started
with another interpreter, import path or `PYTHON*`/`LD_*` variables) the command runs the stage
itself, as before.

A child dies with the host (`PR_SET_PDEATHSIG`), the host kills a child whose command went away,
and the host ends when the batch process closes its pipe or dies. A child stays in the batch
process's process group, so a signal to the group reaches it as it reached a stage before.
"""

from __future__ import annotations

import atexit
import importlib
import io
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mainstem.openlineage.stage_client import HEADER, HOST_ENV, WARM_ENV

STAGE_MODULE = "mainstem.openlineage.stage_run"
# What the stage commands import besides their own stage module, found by listing the modules a
# hosted stage still imported: the runner, DVC as the dataset description opens it, pandera's
# validation backends (with hypothesis, which its strategies import), Arrow's dataset layer and
# Pillow's decoders. A name that is missing is skipped; the stage then imports what it needs.
PRELOAD = (
    STAGE_MODULE,
    "mainstem.openlineage.reporting",
    "mainstem.openlineage.datasets",
    "mainstem.openlineage.dvc_datasets",
    "mainstem.openlineage.emitter",
    "dvc.repo",
    "dvc.repo.stage",
    "dvc.repo.metrics",
    "dvc.repo.params",
    "dvc.repo.plots",
    "dvc.repo.artifacts",
    "dvc.repo.datasets",
    "dvc.dependency.param",
    "dvc.scm",
    "dvc.lock",
    "dvc.data_cloud",
    "dvc.cachemgr",
    "dvc.dvcfile",
    "dvc.utils.strictyaml",
    "dvc_data.hashfile.db.local",
    "scmrepo.git",
    "scmrepo.git.backend.dulwich",
    "scmrepo.git.backend.pygit2",
    "scmrepo.git.backend.gitpython",
    "ruamel.yaml",
    "flufl.lock",
    "zc.lockfile",
    "dvc.dirs",
    "configobj",
    "platformdirs",
    "pyparsing",
    "fsspec.implementations.memory",
    "dulwich.ignore",
    "dulwich.worktree",
    "dulwich.trailers",
)
# the large libraries of the later stages, each a fair share of a second to import
LIBRARIES = ("numpy", "pyarrow", "pyarrow.parquet", "pandas", "pandera", "PIL.Image")
# imported with the second stage (validate): the libraries of validation and of the master
PRELOAD_LATER = (
    "pandera.strategies",
    "pandera.strategies.pandas_strategies",
    "pandera.backends.pandas.builtin_checks",
    "pandera.backends.pandas.builtin_hypotheses",
    "pandera.api.geopandas",
    "pandera.backends.pandas.register",
    "pandera.io",
    "pandera.accessors.pandas_accessor",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
    "PIL.BmpImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.PpmImagePlugin",
    "pandas.io.formats.string",
    "multiprocessing.popen_fork",
    "multiprocessing.synchronize",
)
# a step of the plan that is not an import: read the first stage's definition through DVC once
# (`dvc_datasets.load_definitions`), after DVC's modules, so every child finds DVC's parsers built
DEFINITIONS = "(the pipeline's definitions)"
_STOP_WAIT = 10.0
log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class _Started:
    process: subprocess.Popen[bytes]
    pipe: int  # the write end: closing it stops the host
    directory: str
    address: str


@contextmanager
def stage_host(root: Path, stages: Sequence[str]) -> Iterator[dict[str, str]]:
    """A host for the stage commands run inside the block; yields the variables that point them
    at it (none when `MAINSTEM_WARM_STAGES=0`, or when no host could start: each stage then
    starts its own interpreter). The host is gone when the block ends."""
    started = None if os.environ.get(WARM_ENV, "1") == "0" else _start(root, stages)
    if started is None:
        yield {}
        return
    try:
        yield {HOST_ENV: started.address}
    finally:
        os.close(started.pipe)
        try:
            started.process.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:
            started.process.kill()
            started.process.wait()
        shutil.rmtree(started.directory, ignore_errors=True)


def _start(root: Path, stages: Sequence[str]) -> _Started | None:
    from mainstem.commands import tool_env

    read_end, write_end = os.pipe()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    directory = ""
    try:
        directory = tempfile.mkdtemp(prefix="mainstem-stages-")
        address = os.path.join(directory, "socket")
        listener.bind(address)
        listener.listen(16)
        command = [sys.executable, "-m", __name__, str(listener.fileno()), str(read_end), *stages]
        process = subprocess.Popen(
            command,
            cwd=root,
            env=tool_env(),
            pass_fds=(listener.fileno(), read_end),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
    except OSError as exc:  # a socket path too long, a full /tmp: the stages run cold
        log.warning("no warm stage host (%s): each stage starts its own interpreter", exc)
        os.close(write_end)
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
        return None
    finally:
        listener.close()
        os.close(read_end)
    return _Started(process, write_end, directory, address)


def import_plan(stages: Sequence[str]) -> list[tuple[str, str | None]]:
    """The host's imports in order, each with the stage it completes: the first stage after
    what all stages share and a first read of the pipeline (DEFINITIONS), the second after the
    libraries of validation, the rest after it.

    The host takes a command only between two imports, so the large libraries come one at a
    time: a command for the first stage then waits for one of them at most, not for all.
    """
    plan: list[tuple[str, str | None]] = [(name, None) for name in PRELOAD]
    if stages:
        plan.append((DEFINITIONS, None))
    for number, stage in enumerate(stages):
        if number == 1:
            plan.extend((name, None) for name in LIBRARIES)
        plan.append((f"stages.{stage}", None))
        if number == 1:
            plan.extend((name, None) for name in PRELOAD_LATER)
        plan[-1] = (plan[-1][0], stage)
    return plan


def _prepare_quietly(name: str, stages: Sequence[str]) -> None:
    """One step of the plan: an import, or reading the pipeline's definitions (DEFINITIONS)."""
    try:
        if name == DEFINITIONS:
            from mainstem.openlineage.dvc_datasets import load_definitions

            load_definitions(Path.cwd(), stages[0])
        else:
            importlib.import_module(name)
    except Exception:  # the stage meets the same error, and reports it, when it runs
        return


def _read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    connection.settimeout(_STOP_WAIT)
    data, fds, _flags, _address = socket.recv_fds(connection, 1 << 16, 3)
    size = int.from_bytes(data[:HEADER], "big")
    body = data[HEADER:]
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    connection.settimeout(None)
    return json.loads(body), fds


def _start_env(env: dict[str, str]) -> dict[str, str]:
    """The variables that shape an interpreter at its start: a host started with other values
    cannot stand in for a fresh one."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LD_"))}


def _declines(request: dict[str, Any], start_path: list[str]) -> bool:
    return (
        request.get("executable") != sys.executable
        or request.get("path") != start_path
        or _start_env(request.get("env", {})) != _start_env(dict(os.environ))
    )


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run_child(request: dict[str, Any], fds: list[int], open_fds: list[int]) -> NoReturn:
    """In the forked child: become the stage command, run the stage, exit as it exits."""
    code = 1
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in open_fds:
            os.close(fd)
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv[:] = request["argv"]
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=stream.isatty())
        stage_run = importlib.import_module(STAGE_MODULE)
        code = _exit_code(stage_run.main(request["argv"][1:]))
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException:  # a bug in a stage keeps its traceback, as in its own process
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reply(connection: socket.socket, answer: dict[str, Any]) -> None:
    with suppress(OSError):
        connection.sendall(json.dumps(answer).encode() + b"\n")
    connection.close()


class _Host:
    """The host's loop: a child per stage command, each watched through a pidfd and its socket."""

    def __init__(self, listener: socket.socket, parent: int) -> None:
        self.listener, self.parent = listener, parent
        self.start_path = list(sys.path)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, ("accept", 0))
        self.selector.register(parent, selectors.EVENT_READ, ("parent", 0))
        self.running: dict[int, tuple[socket.socket, int]] = {}
        self.waiting: list[tuple[socket.socket, dict[str, Any], list[int]]] = []
        self.ready: set[str] = set()
        self.all_ready = False

    def serve(self, plan: Sequence[tuple[str, str | None]], stages: Sequence[str]) -> None:
        """Take the steps of `plan` in order; after each, a stage it completes is ready, and
        a command for a ready stage starts at once. A command waits for its stage's modules rather
        than import them itself beside the host, on the same cores. Then take commands until the
        batch process closes the pipe."""
        for name, completes in plan:
            _prepare_quietly(name, stages)
            if completes:
                self.ready.add(completes)
            if self.take(timeout=0):
                return
        self.all_ready = True
        self.start_ready()
        while not self.take(timeout=None):
            continue

    def take(self, timeout: float | None) -> bool:
        """Handle what is ready within `timeout`; True once the host must stop."""
        for key, _events in self.selector.select(timeout):
            kind, pid = key.data
            if kind == "parent":
                for child in self.running:
                    os.kill(child, signal.SIGKILL)
                return True
            if kind == "accept":
                self.accept()
            elif kind == "gone":
                self.gone(pid)
            else:
                self.ended(pid)
        return False

    def accept(self) -> None:
        connection, _ = self.listener.accept()
        try:
            request, fds = _read_request(connection)
        except (OSError, ValueError):
            connection.close()
            return
        if _declines(request, self.start_path):
            for fd in fds:
                os.close(fd)
            _reply(connection, {"declined": True})
            return
        self.waiting.append((connection, request, fds))
        self.start_ready()

    def start_ready(self) -> None:
        """Fork a child for each waiting command whose stage's modules are in."""
        for entry in list(self.waiting):
            connection, request, fds = entry
            stage = request["argv"][1] if len(request["argv"]) > 1 else ""
            if self.all_ready or stage in self.ready:
                self.waiting.remove(entry)
                self.fork(connection, request, fds)

    def fork(self, connection: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        held = [self.listener.fileno(), self.parent, connection.fileno()]
        held += [fd for conn, pidfd in self.running.values() for fd in (conn.fileno(), pidfd)]
        for waiting, _request, waiting_fds in self.waiting:
            held += [waiting.fileno(), *waiting_fds]
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            self.selector.close()
            _run_child(request, fds, held)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(child)
        self.running[child] = (connection, pidfd)
        self.selector.register(pidfd, selectors.EVENT_READ, ("exit", child))
        self.selector.register(connection, selectors.EVENT_READ, ("gone", child))

    def gone(self, pid: int) -> None:
        """The command never writes after its request: its socket turning readable means it went
        away (killed, or its DVC stopped), so its stage must not go on without it."""
        if pid in self.running:
            os.kill(pid, signal.SIGKILL)
            self.selector.unregister(self.running[pid][0])

    def ended(self, pid: int) -> None:
        if pid not in self.running:
            return
        connection, pidfd = self.running.pop(pid)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        if connection.fileno() in self.selector.get_map():
            self.selector.unregister(connection)
        _pid, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            _reply(connection, {"signal": os.WTERMSIG(status)})
        else:
            _reply(connection, {"exit": os.waitstatus_to_exitcode(status)})


def serve(listener: socket.socket, parent: int, stages: Sequence[str]) -> None:
    """Import what the stages import, then fork a child per stage command until `parent` closes."""
    host = _Host(listener, parent)
    # Ctrl-C reaches the whole process group: the stages stop on it, the host on its pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host.serve(import_plan(stages), stages)


def main(argv: list[str]) -> int:
    listener = socket.socket(fileno=int(argv[0]))
    serve(listener, int(argv[1]), argv[2:])
    # nothing to flush or finalize: skip tearing down the imported modules (0.3 s)
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
