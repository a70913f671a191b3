"""Real `dvc repro` over sample batches in a real workspace, with a real local DVC remote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mainstem.commands import dvc, git
from mainstem.flow.batch import process_next_batch
from mainstem.flow.workspace import configure_remote
from mainstem.intake.dropfolder import Claimed
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from mainstem.validation.layout import read_report
from tests.conftest import Deliver


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_three_batches_one_bad(workspace: Path, deliver: Deliver) -> None:
    specs = [
        BatchSpec(1, first_id=1, rows=40, bad_rows=3, bad_images=1),
        BatchSpec(2, first_id=41, rows=30, drop_column="grade"),
        BatchSpec(3, first_id=31, rows=30, table_format="parquet"),
    ]
    runs = []
    for spec in specs:
        deliver(spec)
        runs.append(process_next_batch(workspace))
    params = load_params(workspace)

    master = pd.read_parquet(params.merge.master_dir)
    # batch 1 keeps ids 1..39 but 2, 5, 8 (bad rows) and loses 40 (bad image): 36 rows;
    # batch 3 updates 31..39 and adds 40..60: 21 more
    assert len(master) == 36 + 21
    assert master["item_id"].is_unique
    assert master["item_id"].is_monotonic_increasing
    metrics = json.loads(params.merge.metrics_file.read_text())
    assert metrics["master_rows"] == 57
    assert metrics["batches_merged"] == 2
    assert metrics["batches_rejected"] == 1

    bad = runs[1].claim
    assert isinstance(bad, Claimed)
    quarantined = params.ingest.quarantine_dir / bad.batch_id
    report = json.loads((quarantined / "report.json").read_text())
    assert report["status"] == "rejected"
    assert any("missing column(s) grade" in reason for reason in report["reasons"])
    assert (quarantined / "files" / "batch-002.csv").exists()

    assert "up to date" in dvc(["status"], workspace).stdout
    subjects = git(["log", "--format=%s"], workspace).stdout.splitlines()
    assert len(subjects) == 4  # three batches and the workspace's first commit
    assert f"batch {bad.batch_id} (batch-002): rejected" in subjects[1]


def test_repro_without_a_claimed_batch_changes_nothing(workspace: Path) -> None:
    before = (workspace / "dvc.lock").read_bytes()
    output = dvc(["repro", "merge"], workspace).stdout
    assert "didn't change, skipping" in output
    assert (workspace / "dvc.lock").read_bytes() == before
    assert git(["status", "--porcelain"], workspace).stdout == ""
    assert "up to date" in dvc(["status"], workspace).stdout


def test_rebuild_from_raw_in_a_fresh_clone_is_byte_identical(
    workspace: Path, deliver: Deliver, tmp_path: Path
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=30, bad_rows=2))
    process_next_batch(workspace)
    deliver(BatchSpec(2, first_id=21, rows=30, table_format="parquet"))
    process_next_batch(workspace)
    params = load_params(workspace)

    clone = tmp_path / "clone"
    git(["clone", "--quiet", str(workspace), str(clone)], tmp_path)
    configure_remote(clone)  # same remote: `../remote` is beside both
    dvc(["remote", "modify", "--local", params.remote.name, "url", str(tmp_path / "remote")], clone)
    dvc(["pull", "--quiet"], clone)
    dvc(["repro", "--force", "merge"], clone)

    for relative in ("data/master.parquet", "data/validated"):
        assert _tree_bytes(clone / relative) == _tree_bytes(workspace / relative)
    for metrics in ("metrics/master.json", "metrics/validate.json"):
        assert (clone / metrics).read_bytes() == (workspace / metrics).read_bytes()
    assert "up to date" in dvc(["status"], clone).stdout


def test_stricter_contract_accepts_fewer_rows_in_an_experiment(
    workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=40, loose_rows=9))
    process_next_batch(workspace)
    params = load_params(workspace)
    v1_rows = json.loads(params.merge.metrics_file.read_text())["master_rows"]

    dvc(["exp", "run", "--quiet", "-S", "validate.contract_version=2", "merge"], workspace)
    shown = json.loads(dvc(["exp", "show", "--json"], workspace).stdout)
    rows = {
        exp["rev"] if exp.get("name") is None else exp["name"]: exp["data"]["metrics"][
            "metrics/master.json"
        ]["data"]["master_rows"]
        for commit in shown
        for exp in [commit, *[e["revs"][0] for e in commit.get("experiments") or []]]
    }
    assert v1_rows in rows.values()
    assert min(rows.values()) == v1_rows - 9
    last = json.loads(params.validate.metrics_file.read_text())["last_batch_id"]
    report = read_report(params.validate.validated_dir, last)
    assert report is not None
    assert report["contract"] == "produce/v2"


def test_stage_error_is_a_message_not_a_traceback(workspace: Path) -> None:
    params_file = workspace / "params.yaml"
    params_file.write_text(
        params_file.read_text().replace("contract_version: 1", "contract_version: 9")
    )
    completed = subprocess.run(
        [sys.executable, "-m", "stages.validate"], cwd=workspace, capture_output=True, text=True
    )
    assert completed.returncode == 1
    assert "contracts/produce/v9.yaml does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr
