"""`mainstem upgrade`: a workspace of the release before the packed raw store upgrades in place.

The old workspace is made from that release's own pipeline (git archive of 088e688) and processes
its batches with its own code; the upgrade then runs this checkout's code. Afterwards the master
holds the same rows, new batches continue the sequence, running it again changes nothing, and
every commit, from before the upgrade too, checks out, pulls and reports DVC up to date.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mainstem.commands import dvc, git
from mainstem.errors import LockError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.runner import FlowRun, run_step
from mainstem.flow.sequences import BATCH_FLOW
from mainstem.flow.upgrade import upgrade_workspace
from mainstem.flow.workspace import configure_remote, create_workspace
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from mainstem.validation.layout import read_report
from tests.conftest import ROOT, Deliver

OLD_RELEASE = "088e688"
RUN_OLD_BATCH = (
    "from pathlib import Path; from mainstem.flow.batch import process_next_batch; "
    "process_next_batch(Path.cwd())"
)


def _old_workspace(tmp_path: Path) -> Path:
    source = tmp_path / "old-source"
    source.mkdir()
    archive = subprocess.run(
        ["git", "archive", OLD_RELEASE], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as unpacked:
        unpacked.extractall(source, filter="data")
    return create_workspace(tmp_path / "workspace", source)


def _process_with_its_own_code(workspace: Path, tmp_path: Path, spec: BatchSpec) -> None:
    folder = make_batch(tmp_path / "deliveries" / spec.name, spec)
    submit([folder], load_params(workspace).ingest.incoming_dir, spec.name)
    env = {**os.environ, "PYTHONPATH": str(workspace)}
    subprocess.run([sys.executable, "-c", RUN_OLD_BATCH], cwd=workspace, env=env, check=True)


def _mainstem(workspace: Path, verb: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mainstem VERB --workspace WORKSPACE ARGS` as a user runs it, with this checkout's code."""
    return subprocess.run(
        [sys.executable, "-m", "mainstem.cli", *verb, "--workspace", str(workspace), *args],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _assert_every_commit_checks_out(workspace: Path, tmp_path: Path) -> int:
    clone = tmp_path / "clone"
    git(["clone", "--quiet", str(workspace), str(clone)], tmp_path)
    configure_remote(clone)
    name = load_params(workspace).remote.name
    dvc(["remote", "modify", "--local", name, "url", str(tmp_path / "remote")], clone)
    commits = git(["rev-list", "--reverse", "HEAD"], workspace).stdout.split()
    for commit in commits:
        git(["checkout", "--quiet", "--force", commit], clone)
        pulled = dvc(["pull", "--force"], clone, check=False)
        assert pulled.returncode == 0, f"{commit}: {pulled.stderr}"
        status = dvc(["status"], clone).stdout
        assert "up to date" in status, f"{commit}: {status}"
    return len(commits)


def test_an_old_workspace_upgrades_in_place_and_keeps_every_commit(tmp_path: Path) -> None:
    workspace = _old_workspace(tmp_path)
    for n in (1, 2):
        spec = BatchSpec(n, 1 + 5 * (n - 1), 6, image_size=16)
        _process_with_its_own_code(workspace, tmp_path, spec)
    params = load_params(workspace)
    assert len([p for p in params.ingest.raw_dir.iterdir() if p.is_dir()]) == 2  # old layout
    rows = pd.read_parquet(params.merge.master_dir)

    commit = upgrade_workspace(workspace, ROOT)

    assert commit is not None
    subject = git(["log", "-1", "--format=%s"], workspace).stdout.strip()
    assert subject == "upgrade: raw store packed, one file per batch (2 batches packed)"
    body = git(["log", "-1", "--format=%b"], workspace).stdout
    # the settings the new code needs were added, and the workspace's own values kept
    assert "params.yaml: validate.drift_reference" in body
    assert "models/drift_reference.json (new)" in body
    upgraded = yaml.safe_load((workspace / "params.yaml").read_text())
    assert upgraded["retrain"]["drift"] is False
    assert upgraded["validate"]["contract_version"] == params.validate.contract_version
    assert [r.name for r in list_raw_batches(params.ingest.raw_dir)] == ["batch-001", "batch-002"]
    assert sorted(p.name for p in params.ingest.raw_dir.iterdir()) == [
        ".gitignore",
        "batch.tar",
        "index",
    ]
    assert sorted(p.name for p in params.validate.validated_dir.iterdir()) == [
        ".gitignore",
        "batch",
        "index",
    ]
    first = read_report(
        params.validate.validated_dir, list_raw_batches(params.ingest.raw_dir)[0].batch_id
    )
    assert first is not None
    assert first["sequence"] == 1  # a past batch's report, read from the DVC cache
    pd.testing.assert_frame_equal(pd.read_parquet(params.merge.master_dir), rows)
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert upgrade_workspace(workspace, ROOT) is None

    folder = make_batch(tmp_path / "deliveries" / "batch-003", BatchSpec(3, 20, 4, image_size=16))
    submit([folder], params.ingest.incoming_dir, "batch-003")
    run = process_next_batch(workspace)
    assert run.report is not None
    assert run.report["sequence"] == 3
    assert len(pd.read_parquet(params.merge.master_dir)) == len(rows) + 4
    assert _assert_every_commit_checks_out(workspace, tmp_path) == 5
    commits = git(["rev-list", "--reverse", "HEAD"], workspace).stdout.split()
    checked = _mainstem(workspace, ["lineage", "check"], *commits)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [line[:-1] for line in checked.stdout.splitlines() if line.endswith(":")] == commits
    status = _mainstem(workspace, ["status"], "--no-airflow", "--json")
    assert status.returncode == 0, status.stderr
    shown = [(b["name"], b["outcome"]) for b in json.loads(status.stdout)["batches"]]
    assert shown == [(f"batch-00{n}", "accepted") for n in (1, 2, 3)]


def test_an_upgrade_waits_while_a_batch_is_claimed(workspace: Path, deliver: Deliver) -> None:
    deliver(BatchSpec(1, first_id=1, rows=4, image_size=16))
    run_step(BATCH_FLOW, "claim", FlowRun(workspace, "run-1"), {})
    with pytest.raises(LockError, match=r"let it finish .* then run `mainstem upgrade` again"):
        upgrade_workspace(workspace, ROOT)
