"""The warm stage host: a stage command handed to it runs as it would in its own interpreter.

Each test runs `python -m mainstem.openlineage.stage_run probe`, as DVC runs a stage command, in a
folder holding a `stages/probe.py` of its own. The probe records where it ran, what it saw and
which process imported it, then does what the test's variables ask: print, exit with a status,
sleep, or kill itself. A batch through the real pipeline, with and without the host, is compared
byte for byte at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mainstem.commands import tool_env
from mainstem.flow.batch import process_next_batch
from mainstem.local.samples import BatchSpec
from mainstem.openlineage.stage_client import HOST_ENV, WARM_ENV
from mainstem.openlineage.stage_host import DEFINITIONS, import_plan, stage_host
from mainstem.params import load_params
from tests.conftest import Deliver

PROBE = """
import json, os, signal, sys, time

IMPORTED_BY = os.getpid()


def main():
    record = {
        "pid": os.getpid(), "ppid": os.getppid(), "imported_by": IMPORTED_BY,
        "cwd": os.getcwd(), "argv": sys.argv, "value": os.environ.get("PROBE_VALUE"),
        "path0": sys.path[0],
        # the workspaces whose pipeline DVC had read in this process before the stage began
        "definitions": sorted(getattr(
            sys.modules.get("mainstem.openlineage.dvc_datasets"), "DEFINITIONS_LOADED", ()
        )),
    }
    with open(os.environ["PROBE_RECORD"], "w") as handle:
        json.dump(record, handle)
    print("to stdout from the probe")
    print("to stderr from the probe", file=sys.stderr)
    if os.environ.get("PROBE_SLEEP"):
        time.sleep(float(os.environ["PROBE_SLEEP"]))
    if os.environ.get("PROBE_KILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    return int(os.environ.get("PROBE_EXIT", "0"))
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder DVC could run the probe stage in: `stages/probe.py` and a params.yaml."""
    root = tmp_path / "workspace"
    (root / "stages").mkdir(parents=True)
    (root / "stages" / "__init__.py").write_text("", encoding="utf-8")
    (root / "stages" / "probe.py").write_text(PROBE, encoding="utf-8")
    (root / "params.yaml").write_text("openlineage:\n  enabled: false\n", encoding="utf-8")
    return root


@pytest.fixture
def host(folder: Path) -> Iterator[dict[str, str]]:
    with stage_host(folder, ["probe"]) as env:
        yield env


def start_command(folder: Path, env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    variables = tool_env({**env, "PROBE_RECORD": str(folder / "record.json"), **extra})
    return subprocess.Popen(
        [sys.executable, "-m", "mainstem.openlineage.stage_run", "probe"],
        cwd=folder,
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, seconds: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, not yet reaped by its parent
            return True
        time.sleep(0.05)
    return False


def test_a_hosted_stage_runs_in_a_warm_child_with_the_commands_streams_and_status(
    folder: Path, host: dict[str, str]
) -> None:
    command = start_command(folder, host, PROBE_VALUE="seen", PROBE_EXIT="3")
    out, err = command.communicate(timeout=60)
    record = wait_for(folder / "record.json")

    assert command.returncode == 3
    assert "to stdout from the probe" in out
    assert "to stderr from the probe" in err
    # a child of the host, not the command; the host imported the stage module before forking it
    assert record["pid"] != command.pid
    assert record["ppid"] != command.pid
    assert record["imported_by"] == record["ppid"]
    assert record["cwd"] == str(folder)
    assert record["value"] == "seen"
    assert record["path0"] == str(folder)
    assert record["argv"][1:] == ["probe"]


def test_a_stage_killed_by_a_signal_kills_its_command_with_the_same_signal(
    folder: Path, host: dict[str, str]
) -> None:
    command = start_command(folder, host, PROBE_KILL="1")
    command.communicate(timeout=60)
    assert command.returncode == -signal.SIGKILL


def test_a_command_that_goes_away_takes_its_stage_with_it(
    folder: Path, host: dict[str, str]
) -> None:
    command = start_command(folder, host, PROBE_SLEEP="60")
    record = wait_for(folder / "record.json")
    command.kill()
    command.communicate(timeout=60)
    assert gone(int(record["pid"]))


def test_a_host_that_dies_fails_the_command_with_one_line_and_takes_the_stage(
    folder: Path, host: dict[str, str]
) -> None:
    command = start_command(folder, host, PROBE_SLEEP="60")
    record = wait_for(folder / "record.json")
    os.kill(int(record["ppid"]), signal.SIGKILL)
    _out, err = command.communicate(timeout=60)

    assert command.returncode == 1
    assert err.strip().splitlines()[-1].startswith("probe: error: the warm stage host stopped")
    assert WARM_ENV in err
    assert gone(int(record["pid"]))


def test_a_command_started_with_other_interpreter_settings_runs_the_stage_itself(
    folder: Path, host: dict[str, str]
) -> None:
    other_seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or "0") + 1)
    command = start_command(folder, host, PYTHONHASHSEED=other_seed, PROBE_EXIT="4")
    command.communicate(timeout=60)
    record = wait_for(folder / "record.json")
    assert command.returncode == 4
    assert record["pid"] == command.pid == record["imported_by"]


def test_without_a_host_the_command_runs_the_stage_itself(folder: Path) -> None:
    command = start_command(folder, {HOST_ENV: str(folder / "no-such-socket")}, PROBE_EXIT="5")
    command.communicate(timeout=60)
    assert command.returncode == 5
    assert wait_for(folder / "record.json")["pid"] == command.pid


def test_the_host_is_gone_when_its_block_ends(folder: Path) -> None:
    with stage_host(folder, ["probe"]) as env:
        command = start_command(folder, env)
        command.communicate(timeout=60)
        host_pid = int(wait_for(folder / "record.json")["ppid"])
        socket_dir = Path(env[HOST_ENV]).parent
        assert socket_dir.exists()
    assert gone(host_pid, seconds=1)
    assert not socket_dir.exists()


def test_warm_stages_off_gives_no_host(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WARM_ENV, "0")
    with stage_host(folder, ["probe"]) as env:
        assert env == {}


def test_a_host_that_cannot_start_leaves_the_stages_to_run_cold(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket path longer than Unix sockets allow (a long TMPDIR): no host, nothing left."""
    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    with stage_host(folder, ["probe"]) as env:
        assert env == {}
        command = start_command(folder, env, PROBE_EXIT="6")
        command.communicate(timeout=60)
    assert command.returncode == 6
    assert wait_for(folder / "record.json")["pid"] == command.pid
    assert list(long_tmp.iterdir()) == []


def test_the_host_reads_the_pipeline_once_so_its_children_start_with_dvc_warm(
    folder: Path,
) -> None:
    """The stage's dataset description finds DVC's parsers built by the host: the host read the
    stage definitions of the workspace before forking the stage."""
    from dvc.repo import Repo

    Repo.init(str(folder), no_scm=True).close()
    (folder / "dvc.yaml").write_text(
        "stages:\n  probe:\n    cmd: python -m mainstem.openlineage.stage_run probe\n",
        encoding="utf-8",
    )
    with stage_host(folder, ["probe"]) as env:
        command = start_command(folder, env)
        command.communicate(timeout=60)
    record = wait_for(folder / "record.json")

    assert command.returncode == 0
    assert record["pid"] != command.pid
    assert record["definitions"] == [os.path.realpath(folder)]


def test_a_folder_dvc_cannot_read_still_runs_its_stage_warm(
    folder: Path, host: dict[str, str]
) -> None:
    """No DVC repository here: the host's read of the pipeline fails quietly, the stage runs."""
    command = start_command(folder, host, PROBE_EXIT="0")
    command.communicate(timeout=60)
    record = wait_for(folder / "record.json")

    assert command.returncode == 0
    assert record["pid"] != command.pid
    assert record["definitions"] == []


def test_each_stage_is_ready_once_and_in_the_order_dvc_runs_them() -> None:
    plan = import_plan(["ingest", "validate", "merge"])
    completed = [stage for _name, stage in plan if stage]
    assert completed == ["ingest", "validate", "merge"]
    names = [name for name, _stage in plan]
    # the first stage does not wait for pandas; the second waits for its whole module
    assert names.index("stages.ingest") < names.index("pandas") < names.index("stages.validate")
    ready_validate = [stage for _name, stage in plan].index("validate")
    assert ready_validate > names.index("stages.validate")
    # the pipeline is read once DVC is imported, before the first stage can start
    assert names.index("dvc.repo") < names.index(DEFINITIONS) < names.index("stages.ingest")


def test_a_batch_gives_the_same_bytes_with_and_without_the_host(
    workspace: Path, deliver: Deliver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two copies of one workspace take the same batch: warm, and each stage in its own process."""
    cold = tmp_path / "cold"
    subprocess.run(["cp", "-a", str(workspace), str(cold)], check=True)
    (cold.parent / "remote").mkdir(exist_ok=True)
    deliver(BatchSpec(1, 1, 30))
    params = load_params(workspace)
    incoming = params.ingest.incoming_dir
    cold_incoming = load_params(cold).ingest.incoming_dir
    subprocess.run(["cp", "-a", f"{incoming}/.", str(cold_incoming)], check=True)

    warm_run = process_next_batch(workspace)
    monkeypatch.setenv(WARM_ENV, "0")
    cold_run = process_next_batch(cold)

    assert (warm_run.master_rows, cold_run.master_rows) == (30, 30)
    for relative in ("dvc.lock", "metrics/master.json", "metrics/validate.json"):
        assert (workspace / relative).read_bytes() == (cold / relative).read_bytes(), relative
    master = params.merge.master_dir.relative_to(workspace)
    for part in sorted((workspace / master).iterdir()):
        assert part.read_bytes() == (cold / master / part.name).read_bytes(), part.name
