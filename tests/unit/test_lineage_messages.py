"""What lineage commits say: pipeline changes, and re-deliveries before and after a switch."""

from __future__ import annotations

from typing import Any

from mainstem.flow.lineage import BatchRecord
from mainstem.flow.pipeline import (
    FileChange,
    param_changes,
    parse_porcelain,
    pipeline_message,
    pipeline_title,
)

REPORT: dict[str, Any] = {
    "batch_id": "1e0d11aa8326ce8b",
    "name": "batch-001",
    "status": "accepted",
    "rows_in": 50,
    "rows_accepted": 50,
    "rows_rejected": 0,
    "contract": "produce/v2",
}


def test_param_changes_name_each_key_with_its_old_and_new_value() -> None:
    before = {"validate": {"contract_version": 1, "dataset": "produce"}, "merge": {"span": 10}}
    after = {"validate": {"contract_version": 2, "dataset": "produce"}, "train": {"seed": 3}}

    assert param_changes(before, after) == [
        "merge.span 10 → —",
        "train.seed — → 3",
        "validate.contract_version 1 → 2",
    ]


def test_a_contract_switch_is_titled_by_the_param_and_the_contract_it_selects() -> None:
    files = [
        FileChange("contracts/produce/v2.yaml", "added"),
        FileChange("params.yaml", "modified"),
    ]

    title = pipeline_title(["validate.contract_version 1 → 2"], files, "produce/v2")
    message = pipeline_message(["validate.contract_version 1 → 2"], files, "produce/v2", (40, 31))

    assert title == "pipeline: validate.contract_version 1 → 2 (contract produce/v2)"
    assert message.startswith(title + "\n\n")
    assert "files: contracts/produce/v2.yaml (added), params.yaml" in message
    assert "master: 40 → 31 rows" in message


def test_a_code_change_is_titled_by_its_files() -> None:
    files = [FileChange("stages/merge.py", "modified")]

    assert pipeline_title([], files, "produce/v1") == "pipeline: stages/merge.py"


def test_porcelain_entries_become_added_modified_and_deleted_files() -> None:
    output = " M params.yaml\0?? contracts/produce/v3.yaml\0 D stages/old.py\0"

    assert parse_porcelain(output) == [
        FileChange("contracts/produce/v3.yaml", "added"),
        FileChange("params.yaml", "modified"),
        FileChange("stages/old.py", "deleted"),
    ]


def test_a_redelivery_that_changes_nothing_is_a_duplicate() -> None:
    record = BatchRecord.from_report(REPORT, 50, True, "batch-001-again", (50, False))

    assert record.message().startswith(
        "batch 1e0d11aa8326ce8b (batch-001-again): duplicate delivery, nothing applied; "
        "master 50 rows"
    )


def test_a_redelivery_that_moved_the_master_is_not_called_a_duplicate() -> None:
    record = BatchRecord.from_report(REPORT, 50, True, "batch-001-again", (0, True))

    message = record.message()

    assert "duplicate" not in message.splitlines()[0]
    assert "nothing applied" not in message
    assert "applied under contract produce/v2" in message
    assert "master 0 → 50 rows" in message
