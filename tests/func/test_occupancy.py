"""Nothing deletes a folder a live process uses; left-overs of a killed launcher are stopped."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainstem.durable import write_json
from mainstem.errors import MainstemError
from mainstem.local.airflow_launcher import RECORD_FILE, AirflowStack, stop_orphans
from mainstem.local.demo import clear_base
from mainstem.local.occupancy import processes_using
from mainstem.local.services import ProcessRecord


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, each leading its own session; all ended afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def sleeper(
    spawned: list[subprocess.Popen[bytes]],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["sleep", "300"], cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True
    )
    spawned.append(process)
    return process


def dead_record(name: str) -> ProcessRecord:
    process = subprocess.Popen(["sleep", "300"])
    record = ProcessRecord.of(name, process.pid)
    process.kill()
    process.wait()
    return record


def test_a_process_working_in_the_folder_uses_it(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    base = tmp_path / "demo"
    (base / "workspace").mkdir(parents=True)
    assert processes_using(base) == []
    inside = sleeper(spawned, cwd=base / "workspace")
    assert [line.split()[0] for line in processes_using(base)] == [str(inside.pid)]


def test_an_environment_naming_the_folder_uses_it_but_a_sibling_does_not(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    base = tmp_path / "demo"
    base.mkdir()
    sleeper(spawned, env={"AIRFLOW_HOME": f"{tmp_path}/demo2/airflow"})
    assert processes_using(base) == []
    user = sleeper(spawned, env={"DB_URL": f"sqlite:///{base}/airflow/airflow.db"})
    assert processes_using(base) == [f"{user.pid} (sleep 300)"]


def test_orphans_of_a_dead_launcher_are_stopped(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    component = sleeper(spawned)
    write_json(
        tmp_path / RECORD_FILE,
        {
            "launcher": dead_record("launcher").to_json(),
            "processes": [ProcessRecord.of("scheduler", component.pid).to_json()],
        },
    )
    assert stop_orphans(tmp_path) == ["scheduler"]
    assert component.poll() is not None
    assert not (tmp_path / RECORD_FILE).exists()
    assert stop_orphans(tmp_path) == []


def test_components_of_a_live_launcher_are_left_running(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    launcher, component = sleeper(spawned), sleeper(spawned)
    write_json(
        tmp_path / RECORD_FILE,
        {
            "launcher": ProcessRecord.of("launcher", launcher.pid).to_json(),
            "processes": [ProcessRecord.of("scheduler", component.pid).to_json()],
        },
    )
    with pytest.raises(
        MainstemError, match=f"running under process {launcher.pid} \\(scheduler\\)"
    ):
        stop_orphans(tmp_path)
    assert component.poll() is None
    assert (tmp_path / RECORD_FILE).exists()


def test_the_demo_keeps_a_folder_in_use_and_clears_left_overs(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    base = tmp_path / ".demo"
    (base / "workspace").mkdir(parents=True)
    (base / "workspace" / "keep.txt").write_text("lineage\n")
    shell = sleeper(spawned, cwd=base / "workspace")
    with pytest.raises(MainstemError, match=f"in use by {shell.pid} .*Nothing was deleted"):
        clear_base(base, io.StringIO())
    assert (base / "workspace" / "keep.txt").read_text() == "lineage\n"

    shell.kill()
    shell.wait()
    orphan = sleeper(spawned, env={"AIRFLOW_HOME": str(base / "airflow")})
    write_json(
        base / "airflow" / RECORD_FILE,
        {
            "launcher": dead_record("launcher").to_json(),
            "processes": [ProcessRecord.of("scheduler", orphan.pid).to_json()],
        },
    )
    out = io.StringIO()
    clear_base(base, out)
    assert "interrupted demo left running: scheduler" in out.getvalue()
    assert orphan.poll() is not None
    assert not base.exists()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def test_airflow_on_a_taken_port_says_so_and_starts_nothing(
    tmp_path: Path, taken_port: int
) -> None:
    stack = AirflowStack(tmp_path / "workspace", tmp_path / "airflow", port=taken_port)
    with pytest.raises(MainstemError, match=f"port {taken_port} on 127.0.0.1 is taken"):
        stack.start()
    assert stack.processes == {}
    assert not (tmp_path / "airflow").exists()


def test_make_airflow_reports_a_taken_port_in_one_line(tmp_path: Path, taken_port: int) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "dvc.yaml").write_text("stages: {}\n")
    command = [
        sys.executable,
        "-m",
        "mainstem.local.airflow_launcher",
        "--workspace",
        str(workspace),
    ]
    result = subprocess.run(
        [*command, "--port", str(taken_port)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"make airflow: error: port {taken_port} on 127.0.0.1 is taken (by `make stack`, another "
        "`make airflow` or something else); stop that, or choose another port (`--port`)"
    ]
