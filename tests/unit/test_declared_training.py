"""Training declared in params.yaml: the train keys, their check against the contract, the
metric's direction, the memory of a failed training, and a contract inferred from a sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from mainstem.errors import ContractError, MainstemError, ParamsError, TrainingConfigError
from mainstem.flow.workspace import set_param
from mainstem.params import load_params
from mainstem.training.failures import Blocker, failure_blocker, failure_message
from mainstem.training.model import check_declared
from mainstem.training.policy import Scope, StoreFacts, verdict
from mainstem.training.registry import should_promote
from mainstem.validation.contract import load_contract
from mainstem.validation.infer import (
    draft_contract,
    image_columns,
    infer_columns,
    read_sample,
    write_draft,
)
from tests.conftest import ROOT

PRODUCE = ROOT / "contracts/produce/v1.yaml"


def _params(tmp_path: Path, **train: object) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw["train"].update(train)
    for key in [k for k, v in train.items() if v is None]:
        del raw["train"][key]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"task": "clustering"}, "'train.task' must be one of classification, regression"),
        ({"eval_metric": "rmse"}, "'train.eval_metric' must be one of f1_macro, accuracy"),
        ({"task": "regression"}, "'train.eval_metric' must be one of rmse, mae"),
        ({"model_version": "m1"}, "'train.model_version' must be one of linear"),
        ({"features": []}, "'train.features' must be a non-empty list"),
        ({"features": [{"image_file": "sift"}]}, "neither a column name nor"),
        ({"features": ["grade"]}, "lists the label 'grade'"),
        ({"features": ["weight_g", "weight_g"]}, "lists weight_g more than once"),
        ({"feature_version": "f1"}, "'train.feature_version' is derived"),
        ({"label": None}, "'train.label' is missing"),
    ],
)
def test_a_bad_train_key_is_named(tmp_path: Path, train: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        load_params(_params(tmp_path, **train))


def test_feature_version_changes_with_the_declared_features(tmp_path: Path) -> None:
    first = load_params(_params(tmp_path / "a", features=["weight_g"])).train
    second = load_params(_params(tmp_path / "b", features=["weight_g", "diameter_mm"])).train
    again = load_params(_params(tmp_path / "c", features=["weight_g"])).train
    assert first.feature_version != second.feature_version
    assert first.feature_version == again.feature_version


def test_metric_direction_follows_the_metric(tmp_path: Path) -> None:
    assert load_params(ROOT).train.higher_is_better
    regression = _params(
        tmp_path, task="regression", label="weight_g", features=["diameter_mm"], eval_metric="mae"
    )
    assert not load_params(regression).train.higher_is_better


@pytest.mark.parametrize(
    ("higher_is_better", "new", "current", "promoted"),
    [
        (True, 0.8, 0.7, True),
        (True, 0.6, 0.7, False),
        (False, 3.0, 5.0, True),
        (False, 6.0, 5.0, False),
    ],
)
def test_promotion_follows_the_metrics_direction(
    higher_is_better: bool, new: float, current: float, promoted: bool
) -> None:
    assert should_promote(new, current, higher_is_better) is promoted
    assert should_promote(new, None, higher_is_better)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"label": "price"}, r"train.label 'price' is not a column in contract produce/v1 .*fix: "),
        (
            {"task": "regression", "label": "grade", "eval_metric": "rmse"},
            r"'grade' is str, and a regression label must be int64 or float64.*fix: choose",
        ),
        ({"features": ["weight_g", "colour"]}, r"names 'colour', which is not a column.*fix:"),
        ({"features": [{"supplier": "mean_rgb"}]}, r"'supplier', which is not an image column"),
        ({"features": ["image_file"]}, r"image column 'image_file' as a plain column.*mean_rgb"),
        ({"features": ["harvested_on"]}, r"'harvested_on', which is datetime64\[ns\]"),
    ],
)
def test_a_declaration_the_contract_lacks_fails_with_the_fix(
    tmp_path: Path, train: dict[str, object], message: str
) -> None:
    params = load_params(_params(tmp_path, **train))
    with pytest.raises(TrainingConfigError, match=message) as caught:
        check_declared(params.train, load_contract(PRODUCE, check_schema=False))
    assert str(PRODUCE) in str(caught.value)


def test_the_demo_declaration_fits_its_contract() -> None:
    check_declared(load_params(ROOT).train, load_contract(PRODUCE, check_schema=False))


def test_a_failure_blocks_only_its_master_and_configuration() -> None:
    memory = {"master_md5": "m1.dir", "config": "c1", "error": "the label is constant"}
    blocker = failure_blocker(memory, "m1.dir", "c1")
    assert blocker == Blocker(
        "failed", "training failed for master m1.dir; fix: the label is constant"
    )
    assert failure_blocker(memory, "m2.dir", "c1") is None
    assert failure_blocker(memory, "m1.dir", "c2") is None
    assert failure_blocker({}, "m1.dir", "c1") is None


def test_the_stages_own_error_line_is_what_is_remembered() -> None:
    output = "`dvc repro train` failed (exit 1):\nsome log\ntrain: error: too few rows\nERROR: x"
    assert failure_message(output) == "too few rows"
    crash = "Traceback (most recent call last):\n  File x\nValueError: 0 samples\nERROR: failed"
    assert failure_message(crash) == "ValueError: 0 samples"
    assert failure_message("only this") == "only this"


def test_a_blocker_stops_a_retrain_the_rows_would_justify() -> None:
    facts = StoreFacts("sqlite:///m.db", Scope("e", "m", "production"), None, None, None, None)
    assert verdict(500, 100, facts, False).retrain
    blocked = verdict(500, 100, facts, False, Blocker("failed", "training failed for master x"))
    assert (blocked.retrain, blocked.basis) == (False, "failed")
    assert blocked.reason == "training failed for master x"


def _sample(tmp_path: Path) -> Path:
    folder = tmp_path / "sample"
    (folder / "pics").mkdir(parents=True)
    for index in range(6):
        Image.new("RGB", (20, 20), (index * 40, 0, 0)).save(folder / f"pics/{index}.png")
    pd.DataFrame(
        {
            "ref": [f"H-{i}" for i in range(6)],
            "city": ["lyon", "paris"] * 3,
            "price": [100.5, 220.0, None, 180.0, 90.0, 310.0],
            "rooms": [1, 3, 2, 4, 1, 5],
            "listed_on": ["2024-01-0" + str(i + 1) for i in range(6)],
            "pic": [f"pics/{i}.png" for i in range(6)],
        }
    ).to_csv(folder / "houses.csv", index=False)
    return folder


def test_an_inferred_contract_loads_and_validates_its_sample(tmp_path: Path) -> None:
    frame, folder = read_sample(_sample(tmp_path))
    images = image_columns(frame, folder)
    assert images == {"pic": ["PNG"]}
    columns = {c.name: c for c in infer_columns(frame, "ref")}
    assert columns["price"].dtype == "float64"
    assert columns["price"].nullable
    assert columns["price"].value_range == (90.0, 310.0)
    assert columns["rooms"].dtype == "int64"
    assert columns["listed_on"].dtype == "datetime64[ns]"
    assert columns["city"].allowed == ("lyon", "paris")
    assert columns["ref"].value_range is None
    assert columns["ref"].allowed is None
    text = draft_contract("houses", "ref", list(columns.values()), images)
    path = write_draft(tmp_path / "contracts", "houses", text)
    contract = load_contract(path)
    assert contract.primary_key == "ref"
    assert [rule.column for rule in contract.images] == ["pic"]
    assert "CONFIRM" in text


def test_a_released_contract_is_never_overwritten(tmp_path: Path) -> None:
    frame, _ = read_sample(_sample(tmp_path))
    text = draft_contract("houses", "ref", infer_columns(frame, "ref"), {})
    path = write_draft(tmp_path / "contracts", "houses", text)
    write_draft(tmp_path / "contracts", "houses", text)  # a draft may be drafted again
    path.write_text("\n".join(text.splitlines()[2:]), encoding="utf-8")  # reviewed: released
    with pytest.raises(ContractError, match="released contract and is never overwritten"):
        write_draft(tmp_path / "contracts", "houses", text)


def test_a_key_with_repeats_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"ref": ["a", "a"], "x": [1, 2]})
    with pytest.raises(ContractError, match="--key 'ref' has missing or repeated values"):
        infer_columns(frame, "ref")
    with pytest.raises(ContractError, match="--key 'id' is not a column"):
        infer_columns(frame, "id")


def test_set_param_changes_one_key_of_one_section_and_keeps_its_comment() -> None:
    text = "validate:\n  dataset: produce   # the contract\nremote:\n  url: ../remote\n"
    changed = set_param(text, "validate", "dataset", "houses")
    assert changed == 'validate:\n  dataset: "houses"   # the contract\nremote:\n  url: ../remote\n'
    assert (
        yaml.safe_load(set_param(text, "remote", "url", "s3://b/p"))["remote"]["url"] == "s3://b/p"
    )
    with pytest.raises(MainstemError, match=r"no 'remote\.dataset'"):
        set_param(text, "remote", "dataset", "x")
