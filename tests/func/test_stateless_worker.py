"""Stateless workers share only a bare git remote and a DVC remote, never a disk.

Each worker clones the lineage into a scratch folder of its own, pulls what the batch path needs,
processes one batch and pushes: first the data, then the lineage commit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mainstem.cli import main as mainstem
from mainstem.commands import dvc, git
from mainstem.errors import DvcObjectMissingError, HistoryDivergedError, RemoteUnreachableError
from mainstem.flow.worker import WorkerSettings, finish, prepare, process, process_batch
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params

# each test runs the batch path up to three times, a dozen DVC and git processes each: at a load
# of 15 on two cores that is past the suite's default timeout
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture
def remotes(workspace: Path, tmp_path: Path) -> WorkerSettings:
    """The workspace's history in a bare git remote, its data in the DVC remote; no workspace."""
    dvc(["push", "--quiet"], workspace)
    origin = tmp_path / "lineage.git"
    git(["clone", "--quiet", "--bare", str(workspace), str(origin)], tmp_path)
    data = (workspace / load_params(workspace).remote.url).resolve()
    shutil.rmtree(workspace)  # the workers must not lean on it
    return WorkerSettings(str(origin), str(data))


def _batch(tmp_path: Path, number: int) -> Path:
    spec = BatchSpec(number, number * 1000, 8)
    return make_batch(tmp_path / "deliveries" / spec.name, spec)


def _subjects(settings: WorkerSettings) -> list[str]:
    return git(["log", "--format=%s"], Path(settings.git_remote)).stdout.splitlines()


def _master_files(root: Path) -> dict[str, bytes]:
    master = load_params(root).merge.master_dir
    return {p.relative_to(master).as_posix(): p.read_bytes() for p in sorted(master.rglob("*"))}


def test_two_workers_process_batches_in_turn(remotes: WorkerSettings, tmp_path: Path) -> None:
    kept = WorkerSettings(remotes.git_remote, remotes.dvc_remote, tmp_path / "cache-a")
    first = process_batch(kept, _batch(tmp_path, 1), tmp_path / "a1")
    mainstem(
        [
            "worker",
            "process",
            str(_batch(tmp_path, 2)),
            "--git-remote",
            remotes.git_remote,
            "--dvc-remote",
            str(remotes.dvc_remote),
        ]
    )
    fresh = prepare(remotes, tmp_path / "fresh")
    third = process_batch(kept, _batch(tmp_path, 3), tmp_path / "a2")

    assert (first.outcome, third.outcome) == ("pushed", "pushed")
    subjects = _subjects(remotes)
    assert [s.split(": ")[0].split(" (")[1] for s in subjects[:3]] == [
        "batch-003)",
        "batch-002)",
        "batch-001)",
    ]
    assert "master 24 rows" in subjects[0]
    merges = git(["rev-list", "--merges", "HEAD"], Path(remotes.git_remote)).stdout
    assert merges == ""
    # no past raw pack is pulled: ingest writes this batch's
    assert not (load_params(fresh.root).ingest.raw_dir / "batch.tar").exists()
    # the kept cache fetched only what the other worker added, not the whole history
    assert 0 < third.checkout.pulled.bytes < fresh.pulled.bytes


def test_worker_that_loses_the_race_for_a_batch_stops_as_done(
    remotes: WorkerSettings, tmp_path: Path
) -> None:
    batch = _batch(tmp_path, 1)
    first, second = prepare(remotes, tmp_path / "a"), prepare(remotes, tmp_path / "b")
    first_run, second_run = process(first, batch), process(second, batch)

    won = finish(first, first_run)
    lost = finish(second, second_run)

    assert won.outcome == "pushed"
    assert (lost.outcome, lost.commit) == ("already done", won.commit)
    assert sum("(batch-001)" in s for s in _subjects(remotes)) == 1
    assert git(["rev-parse", "HEAD"], Path(remotes.git_remote)).stdout.strip() == won.commit


def test_worker_behind_a_remote_that_moved_on_fails_and_pushes_nothing(
    remotes: WorkerSettings, tmp_path: Path
) -> None:
    first, second = prepare(remotes, tmp_path / "a"), prepare(remotes, tmp_path / "b")
    won = finish(first, process(first, _batch(tmp_path, 1)))
    behind = process(second, _batch(tmp_path, 2))

    with pytest.raises(HistoryDivergedError, match=r"moved on .* without batch"):
        finish(second, behind)

    assert git(["rev-parse", "HEAD"], Path(remotes.git_remote)).stdout.strip() == won.commit


def test_fresh_clone_and_pull_rebuild_the_workers_master_byte_identical(
    remotes: WorkerSettings, tmp_path: Path
) -> None:
    process_batch(remotes, _batch(tmp_path, 1), tmp_path / "a")
    last = process_batch(remotes, _batch(tmp_path, 2), tmp_path / "b")

    fresh = tmp_path / "fresh"
    git(["clone", "--quiet", remotes.git_remote, str(fresh)], tmp_path)
    dvc(["remote", "add", "--local", "--default", "storage", str(remotes.dvc_remote)], fresh)
    dvc(["pull", "--quiet"], fresh)

    assert _master_files(fresh) == _master_files(last.checkout.root)
    assert "up to date" in dvc(["status"], fresh).stdout


def test_unreachable_git_remote_is_one_clear_error(tmp_path: Path) -> None:
    settings = WorkerSettings(str(tmp_path / "nowhere.git"), str(tmp_path))

    with pytest.raises(RemoteUnreachableError, match="cannot clone the lineage remote"):
        prepare(settings, tmp_path / "scratch")


def test_worker_verb_reports_an_unreachable_remote_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["worker", "process", str(_batch(tmp_path, 1)), "--git-remote", str(tmp_path / "x")]

    with pytest.raises(SystemExit) as stopped:
        mainstem(args)

    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("mainstem: error: cannot clone the lineage remote")
    assert len(error.splitlines()) == 1


def test_dvc_remote_that_lost_an_object_is_one_clear_error(
    remotes: WorkerSettings, tmp_path: Path
) -> None:
    remote = Path(str(remotes.dvc_remote))
    lock = yaml.safe_load(git(["show", "HEAD:dvc.lock"], Path(remotes.git_remote)).stdout)
    listing = lock["stages"]["merge"]["outs"][0]["md5"]
    part = json.loads((remote / "files" / "md5" / listing[:2] / listing[2:]).read_text())[0]
    (remote / "files" / "md5" / part["md5"][:2] / part["md5"][2:]).unlink()

    with pytest.raises(DvcObjectMissingError, match="lacks 1 object"):
        prepare(remotes, tmp_path / "b")
