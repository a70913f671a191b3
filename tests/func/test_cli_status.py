"""`mainstem status`, `mainstem report` and `--help` on every verb, on a real workspace."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from mainstem.cli import build_parser, main
from mainstem.flow.batch import process_next_batch
from mainstem.flow.status import threshold
from mainstem.flow.workspace import configure_remote
from mainstem.intake import lock
from mainstem.intake.dropfolder import Claimed
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from mainstem.training.decision_log import record_decision


def status(workspace: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    main(["status", "--workspace", str(workspace), "--no-airflow", "--json"])
    return dict(json.loads(capsys.readouterr().out))


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command expecting an operator error; its one line on stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1
    return err


@pytest.fixture(scope="module")
def processed(
    workspace_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """A workspace where batch-001 was processed, shared by the module; its batch id."""
    base = tmp_path_factory.mktemp("processed")
    workspace = base / "workspace"
    shutil.copytree(workspace_template, workspace, symlinks=True)
    configure_remote(workspace)
    folder = make_batch(
        base / "batch-001", BatchSpec(1, first_id=1, rows=20, bad_rows=2, bad_images=1)
    )
    submit([folder], load_params(workspace).ingest.incoming_dir, "batch-001")
    run = process_next_batch(workspace)
    assert isinstance(run.claim, Claimed)
    return workspace, run.claim.batch_id


def test_status_of_a_fresh_workspace(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shown = status(workspace, capsys)
    assert shown["batches"] == []
    assert shown["incoming"]["lock"] is None
    assert shown["master_rows"]["rows"] == 0
    assert shown["retrain_threshold_rows"] == {
        "value": 400,
        "source": "params.yaml retrain.threshold_rows",
    }
    assert shown["last_decision"] is None


def test_status_shows_the_batches_the_waiting_delivery_and_the_lock_holder(
    processed: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, batch_id = processed
    incoming = load_params(workspace).ingest.incoming_dir
    submit([make_batch(tmp_path / "batch-002", BatchSpec(2, first_id=21, rows=5))], incoming)
    incoming = load_params(workspace).ingest.incoming_dir
    claimed_at = time.time()
    assert lock.acquire(incoming, lock.owner_for("run-42", claimed_at, "b2"))

    shown = status(workspace, capsys)
    waiting = shown["incoming"]
    assert waiting["files"] == 6
    assert waiting["manifest"]
    assert not waiting["ready"]
    held = waiting["lock"]
    assert (held["run_id"], held["pid"], held["batch_id"]) == ("run-42", os.getpid(), "b2")
    assert held["owner_alive"] is True
    assert held["state"] == "live"
    [batch] = shown["batches"]
    assert (batch["batch_id"], batch["sequence"], batch["name"]) == (batch_id, 1, "batch-001")
    assert batch["outcome"] == "accepted"
    assert batch["merged"]
    assert (batch["rows_in"], batch["rows_accepted"], batch["rows_rejected"]) == (20, 17, 3)
    assert Path(batch["report"]).is_file()
    assert shown["master_rows"]["rows"] == 17

    main(["status", "--workspace", str(workspace), "--no-airflow"])
    text = capsys.readouterr().out
    assert "lock: held by run run-42" in text
    assert "for batch b2" in text
    assert f"#1 {batch_id} (batch-001): accepted, 17 of 20 rows accepted" in text
    assert "master_rows: 17 (DVC metrics metrics/master.json)" in text


def test_status_lists_a_delivery_refused_at_the_drop_folder(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = load_params(workspace).ingest.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "rows.csv").write_text("item_id\n1\n")
    os.symlink("/etc/passwd", incoming / "link.png")
    (incoming / "_READY").write_bytes(b"")
    assert not isinstance(process_next_batch(workspace).claim, Claimed)

    [batch] = status(workspace, capsys)["batches"]
    assert batch["outcome"] == "refused at the claim"
    assert batch["sequence"] is None
    assert any("symlink" in reason for reason in batch["reasons"])
    err = fails(["report", batch["batch_id"][:6], "--workspace", str(workspace)], capsys)
    assert "refused at the drop folder, before validation" in err


def test_status_shows_the_last_recorded_decision(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decision = {"retrain": True, "reason": "bootstrap: 450 rows >= threshold 400"}
    record_decision(load_params(workspace), decision, "retrain_policy_dag", "2026-11-27T12:00:00")
    shown = status(workspace, capsys)["last_decision"]
    assert shown["decision"] == decision
    assert shown["decided_by"] == "retrain_policy_dag"
    main(["status", "--workspace", str(workspace), "--no-airflow"])
    assert "last retrain decision: RETRAIN - bootstrap: 450 rows" in capsys.readouterr().out


def test_the_threshold_comes_from_the_airflow_variable_when_set(workspace: Path) -> None:
    params = load_params(workspace)
    assert threshold(params, {"RETRAIN_THRESHOLD_ROWS": "250"}) == {
        "value": "250",
        "source": "Airflow Variable RETRAIN_THRESHOLD_ROWS",
    }
    unset = threshold(params, {"RETRAIN_THRESHOLD_ROWS": None})
    assert unset["value"] == 400
    assert "is not set" in unset["source"]


def test_report_finds_the_page_by_id_prefix_or_name(
    processed: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, batch_id = processed
    for key in (batch_id, batch_id[:4], "batch-001"):
        main(["report", key, "--workspace", str(workspace)])
        page = Path(capsys.readouterr().out.strip())
        assert page == workspace / "reports" / "batches" / f"{batch_id}.html"
        assert page.read_text().startswith("<!DOCTYPE html>")
    assert "no batch id starts with 'zz'" in fails(
        ["report", "zz", "--workspace", str(workspace)], capsys
    )


def test_report_open_without_a_display_prints_the_path(
    processed: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, batch_id = processed
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    main(["report", batch_id[:6], "--open", "--workspace", str(workspace)])
    captured = capsys.readouterr()
    assert captured.out.strip().endswith(f"reports/batches/{batch_id}.html")
    assert "no display" in captured.err


def test_every_verb_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    def verbs(parser: Any, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for action in parser._actions:
            choices = getattr(action, "choices", None)  # a list for an option's values
            for name, sub in (choices if isinstance(choices, dict) else {}).items():
                if hasattr(sub, "_actions"):
                    found += verbs(sub, [*prefix, name])
        return found

    commands = verbs(build_parser(), [])
    assert ["status"] in commands
    assert ["report"] in commands
    assert ["stack", "down"] in commands
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith("usage: mainstem")


def test_a_missing_workspace_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(["status", "--workspace", str(tmp_path / "nowhere"), "--no-airflow"], capsys)
    assert err.startswith("mainstem: error:")
    assert "params.yaml not found" in err
