"""`mainstem` as a first-time operator meets it: running again after a failure, exit statuses,
summaries that agree with themselves, `--version`, help, next steps and a closed pipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from mainstem.cli import main
from mainstem.commands import git
from mainstem.crashpoints import read_trace
from mainstem.flow.batch import process_next_batch
from mainstem.flow.lineage import AUTHOR
from mainstem.flow.workspace import configure_remote
from mainstem.intake import lock
from mainstem.intake.dropfolder import Claimed
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from tests.conftest import ROOT, Deliver

CONTRACT = Path("contracts/produce/v1.yaml")
GOOD_POLICY = "row_policy: quarantine_rows"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`mainstem ARGS` in a process of its own, as an operator runs it."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "mainstem.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path, **env},
        check=False,
    )


def process(workspace: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`mainstem process` in this process: its exit status and what it printed."""
    try:
        main(["process", "--workspace", str(workspace)])
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def set_contract(workspace: Path, text: str) -> None:
    """Write the workspace's contract and commit it, as a released pipeline change would be."""
    (workspace / CONTRACT).write_text(text)
    git(["add", str(CONTRACT)], workspace)
    git([*AUTHOR, "commit", "--quiet", "-m", "pipeline: contract edited"], workspace)


def break_contract(workspace: Path) -> str:
    """Commit a typo in the workspace's contract; the text to put back with `set_contract`.

    A typo committed (by hand, or by `mainstem pipeline commit` before its repro failed on it)
    is the pipeline the next run must use, so the batch fails cleanly inside a stage.
    """
    text = (workspace / CONTRACT).read_text()
    set_contract(workspace, text.replace(GOOD_POLICY, "row_policy: quarantine_row"))
    return text


def test_run_again_after_a_clean_failure_resumes_the_batch_at_once(
    workspace: Path, deliver: Deliver, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=10))
    good = break_contract(workspace)

    failed = cli("process", "--workspace", str(workspace))
    assert failed.returncode == 1, failed.stderr
    assert "fix the cause and run again" in failed.stderr
    assert "Traceback" not in failed.stderr
    main(["status", "--workspace", str(workspace), "--no-airflow"])
    assert "the run stopped on an error" in capsys.readouterr().out

    set_contract(workspace, good)
    code, out = process(workspace, capsys)

    assert code == 0, out
    assert "batch-001 (" in out
    assert "accepted" in out
    assert lock.read_owner(load_params(workspace).ingest.incoming_dir) is None


def test_a_failed_run_leaves_its_batch_to_the_next_run_while_its_process_lives(
    workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=10))
    good = break_contract(workspace)
    with pytest.raises(Exception, match="run again"):
        process_next_batch(workspace, run_id="first")
    set_contract(workspace, good)

    second = process_next_batch(workspace, run_id="second")

    assert isinstance(second.claim, Claimed)
    assert second.claim.resumed
    assert second.report is not None
    assert second.report["status"] == "accepted"


def write_point_of(workspace: Path, probe: Path, label: str) -> int:
    """The number of the write point `label` in a clean run of a copy of `workspace`."""
    shutil.copytree(workspace, probe, symlinks=True)
    configure_remote(probe)
    counter, trace = probe.parent / "probe-counter", probe.parent / "probe-trace"
    done = cli(
        "process",
        "--workspace",
        str(probe),
        MAINSTEM_CRASH_COUNTER=str(counter),
        MAINSTEM_CRASH_TRACE=str(trace),
    )
    assert done.returncode == 0, done.stderr
    return read_trace(trace).index(label) + 1


def test_a_killed_run_is_taken_over_at_once(
    workspace: Path, deliver: Deliver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=10))
    at = write_point_of(workspace, tmp_path / "probe", "dvc repro")
    counter = tmp_path / "crash-counter"
    killed = cli(
        "process",
        "--workspace",
        str(workspace),
        MAINSTEM_CRASH_COUNTER=str(counter),
        MAINSTEM_CRASH_AT=str(at),
    )
    assert killed.returncode == -9
    assert Path(f"{counter}.fired").read_text().split() == [str(at), "dvc", "repro"]
    main(["status", "--workspace", str(workspace), "--no-airflow"])
    assert "its holder is gone (or silent too long); the next `mainstem process`" in (
        capsys.readouterr().out
    )

    code, out = process(workspace, capsys)

    assert code == 0, out
    assert "accepted" in out


def test_exit_status_of_each_outcome(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = load_params(workspace).ingest.incoming_dir
    assert process(workspace, capsys)[0] == 0  # nothing waiting

    submit(
        [make_batch(tmp_path / "b3", BatchSpec(3, first_id=1, rows=10, drop_column="grade"))],
        incoming,
        "no-grade",
    )
    code, out = process(workspace, capsys)
    assert "REJECTED by the contract" in out
    assert code == 3

    (incoming / "rows.csv").write_text("item_id\n1\n")
    os.symlink("/etc/passwd", incoming / "link.png")
    (incoming / "_READY").write_bytes(b"")
    code, out = process(workspace, capsys)
    assert "REJECTED at the drop folder" in out
    assert code == 3

    submit([make_batch(tmp_path / "b4", BatchSpec(4, first_id=1, rows=5))], incoming, "b4")
    holder = lock.owner_for("another-run", time.time(), "b4", one_process=True)
    assert lock.acquire(incoming, holder, ready_required=True)
    code, out = process(workspace, capsys)
    assert "being processed by run another-run" in out
    assert "may take it over from" in out
    assert code == 4
    main(["status", "--workspace", str(workspace), "--no-airflow"])
    assert "another run may take it over from" in capsys.readouterr().out


def test_process_on_a_missing_workspace_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = process(tmp_path / "nowhere", capsys)
    assert code == 1
    assert out.startswith("mainstem: error:")
    assert out.count("\n") == 1


def test_process_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["process", "--help"])
    text = capsys.readouterr().out
    for line in (
        "0  the batch was accepted",
        "1  an error",
        "3  the batch was rejected",
        "4  the batch is locked",
    ):
        assert line in text


def test_a_redelivery_says_it_is_a_duplicate_and_its_report_is_found_by_its_name(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = load_params(workspace).ingest.incoming_dir
    folder = make_batch(tmp_path / "b1", BatchSpec(1, first_id=1, rows=20, bad_images=2))
    submit([folder], incoming, "b1")
    code, first = process(workspace, capsys)
    assert code == 0
    # the summary gives each bad image's reason, not a bare "image" check
    assert "image_file: the image file is empty (0 bytes) (1 row)" in first
    assert "image_file: image (" not in first

    submit([folder], incoming, "b1-again")
    code, again = process(workspace, capsys)

    assert code == 0
    assert "b1-again (" in again
    assert "DUPLICATE, nothing applied" in again
    assert "delivered before as 'b1'" in again
    assert "accepted" not in again
    main(["report", "b1-again", "--workspace", str(workspace)])
    page = Path(capsys.readouterr().out.strip())
    # the first delivery's page, copied out of the DVC cache under its batch id
    assert page.parent == workspace / "reports" / "batches"
    assert page.suffix == ".html"
    assert page.is_file()


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"mainstem {version('mainstem')}"


@pytest.mark.parametrize(
    ("verb", "says"),
    [
        ("init", "a git and DVC repository of its own"),
        ("submit", "then the _READY marker"),
        ("process", "Claim the batch waiting in the drop folder"),
    ],
)
def test_verbs_describe_themselves(
    verb: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    assert says in " ".join(capsys.readouterr().out.split())


def test_init_prints_the_next_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", str(tmp_path / "ws"), "--dataset", "houses"])
    out = capsys.readouterr().out
    assert "next steps:" in out
    verbs = ("contract infer", "pipeline commit", "submit", "process", "status", "report")
    for verb in (*verbs, "retrain run"):
        assert f"mainstem {verb} --workspace {tmp_path / 'ws'}" in out
    # in the order a new user takes them: the pipeline is recorded before any batch
    assert out.index("pipeline commit") < out.index("mainstem submit")


def test_status_into_a_reader_that_closes_early_ends_quietly(workspace: Path) -> None:
    command = (
        f"{sys.executable} -m mainstem.cli status --workspace {workspace} --no-airflow | head -n 0"
    )
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert piped.stderr == ""
    assert piped.returncode == 141
