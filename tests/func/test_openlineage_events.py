"""OpenLineage events of real stage runs: an accepted batch, a rejected batch and a training.

One workspace processes a batch with bad rows (accepted), a batch missing a column (rejected) and
then trains, with `openlineage.url` pointing at a receiver on 127.0.0.1. Every event in the
workspace's run files must be valid OpenLineage, each run must have one START and one end, the
datasets' versions must be the hashes DVC wrote to dvc.lock, their row counts the metrics', and
the receiver must have got the same events.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mainstem import crashpoints
from mainstem.commands import dvc, git
from mainstem.flow.batch import process_next_batch
from mainstem.flow.train import train_from_decision
from mainstem.flow.workspace import configure_remote
from mainstem.intake.raw_store import pack_path
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.openlineage.settings import load_settings
from mainstem.params import load_params
from mainstem.training.policy import PolicyInputs
from mainstem.training.request import workspace_decision
from mainstem.validation.layout import batch_dir, read_report, records_between
from tests.openlineage_events import badly_ended, read_run_files, runs, schema_errors

CODE = ("mainstem", "stages")
ACCEPTED = BatchSpec(1, first_id=1, rows=40, bad_rows=3, bad_images=1)
REJECTED = BatchSpec(2, first_id=41, rows=30, drop_column="grade")


class Receiver:
    """An OpenLineage HTTP endpoint on 127.0.0.1 that keeps every event POSTed to it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: set[str] = set()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.paths.add(self.path)
                received.events.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@dataclass(frozen=True)
class History:
    workspace: Path
    events: list[dict[str, Any]]
    received: list[dict[str, Any]]
    received_paths: set[str]
    git_status: str
    dvc_status: str


def _set_url(workspace: Path, url: str) -> None:
    """Point the workspace's events at `url` too, and record that as its pipeline."""
    params_file = workspace / "params.yaml"
    params_file.write_text(params_file.read_text().replace('  url: ""', f'  url: "{url}"', 1))
    assert load_settings(workspace).url == url
    git(["commit", "-q", "-m", "pipeline: openlineage.url", "params.yaml"], workspace)


@pytest.fixture(scope="module")
def history(workspace_template: Path, tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("openlineage")
    workspace = base / "workspace"
    shutil.copytree(workspace_template, workspace, symlinks=True)
    configure_remote(workspace)
    shutil.rmtree(workspace / "lineage", ignore_errors=True)  # the template's own first repro
    server = Receiver()
    with pytest.MonkeyPatch.context() as env:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "AIRFLOW_HOME"):
            env.delenv(name, raising=False)
        env.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
        _set_url(workspace, server.url)
        incoming = load_params(workspace).ingest.incoming_dir
        for spec in (ACCEPTED, REJECTED):
            submit([make_batch(base / "deliveries" / spec.name, spec)], incoming, spec.name)
            process_next_batch(workspace)
        git_status = git(["status", "--porcelain"], workspace).stdout
        dvc_status = dvc(["status"], workspace).stdout
        params = load_params(workspace)
        decision = workspace_decision(params, PolicyInputs(threshold="10"))
        assert decision.retrain
        train_from_decision(workspace, decision, requested_by="test")
    server.close()
    return History(
        workspace,
        read_run_files(load_settings(workspace).events_dir),
        server.events,
        server.paths,
        git_status,
        dvc_status,
    )


def _completed(history: History, stage: str) -> list[dict[str, Any]]:
    return [e for e in history.events if e["job"]["name"] == stage and e["eventType"] == "COMPLETE"]


def _lock_versions(workspace: Path, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"][stage]
    entries = [*lock.get("deps", []), *lock.get("outs", [])]
    data = [e for e in entries if "md5" in e and e["path"].split("/")[0] not in CODE]
    return {str(workspace / e["path"]): e["md5"] for e in data}


def test_every_event_is_valid_openlineage(history: History) -> None:
    stages = {e["job"]["name"] for e in history.events}
    assert stages == {"ingest", "validate", "merge", "train"}
    assert {e["eventType"] for e in history.events} == {"START", "COMPLETE"}
    assert {i: schema_errors(e) for i, e in enumerate(history.events) if schema_errors(e)} == {}


def test_each_run_has_one_start_and_one_end(history: History) -> None:
    assert badly_ended(history.events) == {}
    runs = {e["run"]["runId"] for e in history.events}
    # two batches through ingest, validate and merge; one training
    assert len(runs) == 7


def test_dataset_versions_are_the_hashes_in_dvc_lock(history: History) -> None:
    for stage in ("ingest", "validate", "merge", "train"):
        last = _completed(history, stage)[-1]
        versions = {
            d["name"]: d["facets"]["version"]["datasetVersion"]
            for d in [*last["inputs"], *last["outputs"]]
        }
        expected = _lock_versions(history.workspace, stage)
        assert expected, stage
        assert {name: v for name, v in versions.items() if name in expected} == expected, stage
        assert all(d["namespace"].startswith("file://") for d in last["outputs"])


def test_row_counts_are_the_metrics(history: History) -> None:
    params = load_params(history.workspace)
    validated = json.loads(params.validate.metrics_file.read_text())
    master = json.loads(params.merge.metrics_file.read_text())

    def rows(stage: str, path: Path) -> int:
        outputs = _completed(history, stage)[-1]["outputs"]
        found = next(d for d in outputs if d["name"] == str(path))
        return int(found["outputFacets"]["outputStatistics"]["rowCount"])

    assert (
        rows("validate", batch_dir(params.validate.validated_dir))
        == validated["rows_accepted_total"]
    )
    assert rows("merge", params.merge.master_dir) == master["master_rows"]
    assert master["master_rows"] == 36


def test_quality_assertions_are_the_validation_results(history: History) -> None:
    params = load_params(history.workspace)
    accepted, rejected = _completed(history, "validate")

    def assertions(event: dict[str, Any]) -> list[dict[str, Any]]:
        pack = str(pack_path(params.ingest.raw_dir))  # the validate stage reads the batch's pack
        raw = next(d for d in event["inputs"] if d["name"] == pack)
        return raw["inputFacets"]["dataQualityAssertions"]["assertions"]

    reports = [
        read_report(params.validate.validated_dir, record.batch_id)
        for record in records_between(params.validate.validated_dir, 1, 2)
    ]
    failed = {
        (a.get("column") or "", a["assertion"]) for a in assertions(accepted) if not a["success"]
    }
    expected = {(f["column"], f["check"]) for f in reports[0]["failures_by_check"]}
    assert failed == expected
    assert failed
    assert {"batch accepted"} <= {a["assertion"] for a in assertions(accepted) if a["success"]}
    batch = next(a for a in assertions(rejected) if a["assertion"] == "batch accepted")
    assert batch["success"] is False
    assert "grade" in batch["actual"]
    checked = {a.get("column") for a in assertions(accepted)}
    assert {"item_id", "weight_g", "image_file"} <= checked


def test_schema_comes_from_the_active_contract(history: History) -> None:
    params = load_params(history.workspace)
    master = next(
        d
        for d in _completed(history, "merge")[-1]["outputs"]
        if d["name"] == str(params.merge.master_dir)
    )
    fields = {f["name"]: f["type"] for f in master["facets"]["schema"]["fields"]}
    contract = yaml.safe_load(params.validate.contract_path.read_text())
    assert fields == {name: c["dtype"] for name, c in contract["schema"]["columns"].items()}


def test_training_names_its_mlflow_run_model_version_and_master(history: History) -> None:
    params = load_params(history.workspace)
    (train,) = _completed(history, "train")
    metrics = json.loads(params.train.metrics_file.read_text())
    facet = train["run"]["facets"]["mainstem_training"]
    assert facet["mlflowRunId"] == metrics["run_id"]
    assert facet["registeredModelVersion"] == str(metrics["model_version"])
    assert facet["registeredModelName"] == params.train.model_name
    request = json.loads(params.train.request_file.read_text())
    master = next(d for d in train["inputs"] if d["name"] == str(params.merge.master_dir))
    assert master["facets"]["version"]["datasetVersion"] == request["master_md5"]


def test_http_receiver_gets_the_same_events(history: History) -> None:
    assert history.received_paths == {"/api/v1/lineage"}
    assert history.received == history.events


def test_events_leave_git_and_dvc_clean(history: History) -> None:
    assert history.git_status == ""
    assert "up to date" in history.dvc_status
    assert git(["check-ignore", "lineage/openlineage"], history.workspace).stdout.strip()


def test_openlineage_url_in_the_environment_gets_the_events(
    workspace: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    shutil.rmtree(workspace / "lineage", ignore_errors=True)
    completed = subprocess.run(
        [sys.executable, "-m", "mainstem.openlineage.stage_run", "train"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    events = read_run_files(load_settings(workspace).events_dir)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert receiver.events == events


def test_a_failed_stage_ends_its_run_with_fail_and_the_message(workspace: Path) -> None:
    params_file = workspace / "params.yaml"
    params_file.write_text(
        params_file.read_text().replace("contract_version: 1", "contract_version: 9")
    )
    shutil.rmtree(workspace / "lineage", ignore_errors=True)
    completed = subprocess.run(
        [sys.executable, "-m", "mainstem.openlineage.stage_run", "validate"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    events = read_run_files(load_settings(workspace).events_dir)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert "v9.yaml does not exist" in events[1]["run"]["facets"]["errorMessage"]["message"]
    assert [schema_errors(e) for e in events] == [[], []]


def test_a_run_a_crash_left_open_is_aborted_by_the_next_run(workspace: Path) -> None:
    crash = {crashpoints.COUNTER: str(workspace.parent / "crash.count"), crashpoints.CRASH_AT: "1"}
    shutil.rmtree(workspace / "lineage", ignore_errors=True)
    command = [sys.executable, "-m", "mainstem.openlineage.stage_run", "validate"]

    killed = subprocess.run(command, cwd=workspace, env={**os.environ, **crash}, check=False)
    assert killed.returncode == -signal.SIGKILL
    again = subprocess.run(command, cwd=workspace, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    events = read_run_files(load_settings(workspace).events_dir)
    assert sorted(runs(events).values()) == [["START", "ABORT"], ["START", "COMPLETE"]]
    assert badly_ended(events) == {}


def test_a_stage_with_no_client_settings_writes_valid_events_without_the_client(
    workspace: Path,
) -> None:
    shutil.rmtree(workspace / "lineage", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
    report = (
        "import sys\n"
        "from mainstem.openlineage.stage_run import main\n"
        "status = main(['validate'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('openlineage')))\n"
        "sys.exit(status)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", report],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "[]"
    events = read_run_files(load_settings(workspace).events_dir)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert [schema_errors(e) for e in events] == [[], []]
    assert events[1]["inputs"]
    assert events[1]["outputs"]
    assert all("tags" in e["run"]["facets"] for e in events)
