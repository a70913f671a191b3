"""The pipeline page of a real workspace: rebuilt by each batch and training, true to metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mainstem.cli import main as cli
from mainstem.commands import dvc, git
from mainstem.flow.batch import process_next_batch
from mainstem.flow.lineage_summary import CACHE
from mainstem.flow.pipeline_history import PAGE, read_history
from mainstem.flow.train import train_from_decision
from mainstem.flow.workspace import configure_remote
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from mainstem.training.policy import PolicyInputs
from mainstem.training.request import workspace_decision


def metrics_at(workspace: Path, commit: str, file: str) -> dict[str, object]:
    return json.loads(git(["show", f"{commit}:{file}"], workspace).stdout)


@pytest.fixture(scope="module")
def story(workspace_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two batches (the second rejected whole), one training, one more batch; built once."""
    base = tmp_path_factory.mktemp("story")
    workspace = base / "workspace"
    shutil.copytree(workspace_template, workspace, symlinks=True)
    configure_remote(workspace)

    def deliver(spec: BatchSpec) -> None:
        folder = make_batch(base / "deliveries" / spec.name, spec)
        submit([folder], load_params(workspace).ingest.incoming_dir, spec.name)

    params = load_params(workspace)
    deliver(BatchSpec(1, first_id=1, rows=40, bad_rows=3, image_size=16))
    process_next_batch(workspace)
    assert (workspace / PAGE).is_file()  # rebuilt by the batch itself
    assert not params.train.tracking_db.exists()  # and the page made no MLflow store
    deliver(BatchSpec(2, first_id=41, rows=10, image_size=16, drop_column="grade"))
    process_next_batch(workspace)
    (workspace / PAGE).unlink()
    train_from_decision(
        workspace, workspace_decision(params, PolicyInputs(threshold="20")), requested_by="test"
    )
    assert (workspace / PAGE).is_file()  # rebuilt by the training
    deliver(BatchSpec(3, first_id=51, rows=30, image_size=16))
    process_next_batch(workspace)
    return workspace


def test_the_history_shows_what_the_metrics_recorded(story: Path) -> None:
    params = load_params(story)
    history = read_history(params)
    commits = git(["log", "--reverse", "--format=%H %s"], story).stdout.splitlines()
    batch_commits = [line.split()[0] for line in commits if line.split()[1] == "batch"]
    train_commits = [line.split()[0] for line in commits if line.split()[1] == "train:"]
    assert [b.status for b in history.batches] == ["accepted", "rejected", "accepted"]
    for point, commit in zip(history.batches, batch_commits, strict=True):
        master = metrics_at(story, commit, "metrics/master.json")
        validate = metrics_at(story, commit, "metrics/validate.json")
        assert point.master_rows == master["master_rows"]
        assert point.contract == master["contract"]
        assert (point.rows_in, point.rows_accepted, point.rows_rejected) == (
            validate["last_rows_in"],
            validate["last_rows_accepted"],
            validate["last_rows_rejected"],
        )
    (training,) = history.trainings
    trained = metrics_at(story, train_commits[0], "metrics/train.json")
    assert training.after_batch == 2
    assert training.master_rows == trained["master_rows"]
    assert training.score == trained[params.train.eval_metric]
    assert training.model_version == str(trained["model_version"])
    assert training.promoted is True
    assert history.batches[1].reasons[0] == ("missing column(s) grade", 10)
    assert sum(rows for _r, rows in history.batches[0].reasons) >= 3


def test_the_page_is_an_untracked_output(story: Path) -> None:
    assert git(["status", "--porcelain"], story).stdout == ""
    assert "up to date" in dvc(["status"], story).stdout


def test_report_pipeline_prints_the_page_it_built(
    story: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (story / PAGE).unlink()
    cli(["report", "--pipeline", "--workspace", str(story)])
    assert capsys.readouterr().out.strip() == str(story / PAGE)
    page = (story / PAGE).read_text(encoding="utf-8")
    rejected = read_history(load_params(story)).batches[1].batch_id
    assert f'href="batches/{rejected}.html"' in page
    assert (story / "reports" / "batches" / f"{rejected}.html").read_text().startswith("<!DOCTYPE")


def test_report_wants_a_batch_or_the_pipeline(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli(["report", "--workspace", str(workspace)])
    assert done.value.code == 1
    assert "--pipeline" in capsys.readouterr().err


def test_the_page_reads_only_the_commits_made_since_it_was_last_built(story: Path) -> None:
    params = load_params(story)
    full = read_history(params)
    assert read_history(params, incremental=True).batches == full.batches
    cache = story / CACHE
    saved = json.loads(cache.read_text())
    assert saved["head"] == git(["rev-parse", "HEAD"], story).stdout.strip()
    # the saved points are taken as read: a changed one shows, so the commits were not re-read
    saved["batches"][0]["master_rows"] = 123_456
    cache.write_text(json.dumps(saved))
    assert read_history(params, incremental=True).batches[0].master_rows == 123_456
    # a summary of another history (here, another validated store) is read again in full
    saved["state"] = {"contract": "other/v9"}
    cache.write_text(json.dumps(saved))
    assert read_history(params, incremental=True).batches == full.batches
    saved = json.loads(cache.read_text())
    saved["head"] = "0" * 40
    cache.write_text(json.dumps(saved))
    assert read_history(params, incremental=True).trainings == full.trainings
