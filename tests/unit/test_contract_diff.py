"""`contract diff`: each kind of change between two contract versions, and its exit code."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mainstem.validation.contract_diff import diff_contracts, exit_code

ROOT = Path(__file__).resolve().parents[2]
V1: dict[str, Any] = yaml.safe_load((ROOT / "contracts" / "produce" / "v1.yaml").read_text())

Edit = Callable[[dict[str, Any]], None]


def _columns(c: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = c["schema"]["columns"]
    return columns


def _image(c: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = c["contract"]["images"]["image_file"]
    return rule


def _rename(c: dict[str, Any]) -> None:
    _columns(c)["mass_g"] = _columns(c).pop("weight_g")


# (case, edit of v1, kind of the one change it makes, a word the change must say)
CASES: list[tuple[str, Edit, str, str]] = [
    ("column removed", lambda c: _columns(c).pop("grade"), "breaking", "removed"),
    ("column renamed", _rename, "breaking", "renamed to mass_g"),
    (
        "column added",
        lambda c: _columns(c).update(origin={"dtype": "str", "nullable": True}),
        "breaking",
        "added",
    ),
    (
        "optional column added",
        lambda c: _columns(c).update(origin={"dtype": "str", "nullable": True, "required": False}),
        "non-breaking",
        "optional",
    ),
    ("type changed", lambda c: _columns(c)["weight_g"].update(dtype="str"), "breaking", "type"),
    (
        "nullable becomes required",
        lambda c: _columns(c)["diameter_mm"].update(nullable=False),
        "breaking",
        "nullable → required",
    ),
    (
        "required becomes nullable",
        lambda c: _columns(c)["weight_g"].update(nullable=True),
        "non-breaking",
        "required → nullable",
    ),
    (
        "range narrowed",
        lambda c: _columns(c)["weight_g"].update(in_range={"min_value": 1.0, "max_value": 900.0}),
        "breaking",
        "narrowed",
    ),
    (
        "range widened",
        lambda c: _columns(c)["weight_g"].update(in_range={"min_value": 0.5, "max_value": 9e3}),
        "non-breaking",
        "widened",
    ),
    (
        "lower bound raised",
        lambda c: _columns(c)["item_id"].update(greater_than_or_equal_to=10),
        "breaking",
        "narrowed",
    ),
    (
        "allowed set narrowed",
        lambda c: _columns(c)["grade"].update(isin=["A", "B"]),
        "breaking",
        "C no longer allowed",
    ),
    (
        "allowed set widened",
        lambda c: _columns(c)["grade"].update(isin=["A", "B", "C", "D"]),
        "non-breaking",
        "D now allowed",
    ),
    (
        "check added",
        lambda c: _columns(c)["supplier"].update(str_length={"max_value": 10}),
        "breaking",
        "check added",
    ),
    (
        "check removed",
        lambda c: _columns(c)["supplier"].pop("isin"),
        "non-breaking",
        "check removed",
    ),
    (
        "primary key changed",
        lambda c: c["contract"].update(primary_key="image_file"),
        "breaking",
        "primary key",
    ),
    (
        "dedup rule changed",
        lambda c: c["contract"].update(duplicate_keys_in_batch="keep_last"),
        "breaking",
        "duplicate keys in batch",
    ),
    (
        "row policy stricter",
        lambda c: c["contract"].update(row_policy="reject_batch"),
        "breaking",
        "reject_batch",
    ),
    (
        "table format dropped",
        lambda c: c["contract"].update(tabular_formats=["parquet"]),
        "breaking",
        "csv",
    ),
    ("image limit tightened", lambda c: _image(c).update(max_bytes=1000), "breaking", "tightened"),
    ("image minimum raised", lambda c: _image(c).update(min_width=48), "breaking", "tightened"),
    ("image format dropped", lambda c: _image(c).update(formats=["PNG"]), "breaking", "JPEG"),
    (
        "image limit loosened",
        lambda c: _image(c).update(max_width=9000),
        "non-breaking",
        "loosened",
    ),
    (
        "canonical image changed",
        lambda c: _image(c)["canonical"].update(width=32),
        "breaking",
        "canonical",
    ),
    (
        "contract description",
        lambda c: c["contract"].update(description="Fruit, one row per item."),
        "non-breaking",
        "description",
    ),
    (
        "column description",
        lambda c: _columns(c)["grade"].update(description="the inspector's grade"),
        "non-breaking",
        "description",
    ),
]


@pytest.mark.parametrize(
    ("edit", "kind", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_kind_of_change_is_classified(edit: Edit, kind: str, word: str) -> None:
    changed = copy.deepcopy(V1)
    edit(changed)

    (change,) = diff_contracts(V1, changed)

    assert change.kind == kind
    assert word in change.what
    assert exit_code([change]) == (2 if kind == "breaking" else 1)


def test_the_same_contract_has_no_change_and_exit_code_0() -> None:
    assert diff_contracts(V1, copy.deepcopy(V1)) == []
    assert exit_code([]) == 0


def test_one_breaking_change_among_loosenings_makes_the_diff_breaking() -> None:
    changed = copy.deepcopy(V1)
    _columns(changed)["grade"].update(isin=["A", "B", "C", "D"])
    _image(changed).update(max_width=9000)
    _columns(changed)["weight_g"].update(dtype="str")

    changes = diff_contracts(V1, changed)

    assert sorted(c.kind for c in changes) == ["breaking", "non-breaking", "non-breaking"]
    assert exit_code(changes) == 2


def test_v2_is_breaking_and_going_back_to_v1_is_not() -> None:
    v2 = yaml.safe_load((ROOT / "contracts" / "produce" / "v2.yaml").read_text())

    assert exit_code(diff_contracts(V1, v2)) == 2
    assert exit_code(diff_contracts(v2, V1)) == 1


@pytest.mark.parametrize(("old", "new", "status"), [(1, 1, 0), (2, 1, 1), (1, 2, 2), (1, 9, 3)])
def test_the_cli_exit_status_says_none_non_breaking_breaking_or_unreadable(
    old: int, new: int, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from mainstem.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["contract", "diff", str(old), str(new), "--json", "--workspace", str(ROOT)])

    assert exited.value.code == status
    out, err = capsys.readouterr()
    if status == 3:
        assert "v9.yaml does not exist" in err
    else:
        assert len(json.loads(out)) == (0 if status == 0 else 7)
