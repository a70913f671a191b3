"""`contract check`, `contract use` and `mainstem diff` in a real workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mainstem.cli import main
from mainstem.commands import dvc, git
from mainstem.errors import ContractError
from mainstem.flow.batch import process_next_batch
from mainstem.flow.contracts import contract_check, use_contract
from mainstem.flow.master_diff import master_diff
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.conftest import Deliver


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git/" not in p.as_posix()
    }


def test_contract_check_reports_the_rows_v2_would_reject_and_changes_nothing(
    workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=40, loose_rows=9))
    process_next_batch(workspace)
    before = _tree(workspace)

    check = contract_check(load_params(workspace), 2, batches=1)

    # light fruit and old harvests are in the master; small photos only in the raw batch
    assert check.master["rows"] == 40
    assert check.master["rejected"] == 6
    assert check.master["parts_read"] == 1
    reasons = check.master["reasons"]
    assert {reason: found["rows"] for reason, found in reasons.items()} == {
        "weight_g: in_range {'min_value': 50.0, 'max_value': 1500.0}": 3,
        "harvested_on: in_range {'min_value': '2020-01-01', 'max_value': '2099-12-31'}": 3,
    }
    assert all(len(found["examples"]) == 3 for found in reasons.values())
    assert check.master["not_replayed"] == ["images.image_file (checked on the raw batches)"]
    (batch,) = check.batches
    assert (batch.rows_in, batch.rejected, batch.rejected_now) == (40, 9, 0)
    assert _tree(workspace) == before


def test_contract_use_refuses_a_breaking_switch_that_drops_rows_unless_accepted(
    workspace: Path, deliver: Deliver
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=40, loose_rows=9))
    process_next_batch(workspace)
    params_before = (workspace / "params.yaml").read_bytes()

    with pytest.raises(ContractError, match="would drop 6 of 40 master rows"):
        use_contract(workspace, 2)
    assert (workspace / "params.yaml").read_bytes() == params_before

    switch = use_contract(workspace, 2, accept_breaking=True)

    assert switch.commit is not None
    subject, _, body = git(["log", "-1", "--format=%s%n%b"], workspace).stdout.partition("\n")
    assert subject == "pipeline: validate.contract_version 1 → 2 (contract produce/v2)"
    assert "the check foresaw 6 master rows dropped (--accept-breaking)" in body
    assert "master: 40 → 31 rows" in body
    assert "contract_version: 2" in (workspace / "params.yaml").read_text()
    assert "# contracts/<dataset>/v<N>.yaml" in (workspace / "params.yaml").read_text()
    assert "up to date" in dvc(["status"], workspace).stdout
    assert git(["status", "--porcelain"], workspace).stdout == ""


def test_mainstem_diff_shows_the_keys_each_batch_changed(
    workspace: Path, deliver: Deliver, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(BatchSpec(1, first_id=1, rows=40))
    process_next_batch(workspace)
    deliver(BatchSpec(2, first_id=31, rows=30))  # updates 31..40, adds 41..60
    process_next_batch(workspace)

    diff = master_diff(load_params(workspace), "batch-001", "batch-002")

    assert diff.added == list(range(41, 61))
    assert diff.updated == list(range(31, 41))
    assert diff.removed == []
    assert diff.parts_read == 2  # the one part, before and after
    assert diff.metrics["master_rows"] == {"before": 40, "after": 60, "delta": 20}

    main(["diff", "HEAD~2", "HEAD", "--json", "--workspace", str(workspace)])
    shown = json.loads(capsys.readouterr().out)
    assert shown["added"]["count"] == 60
    assert shown["removed"]["count"] == 0
