"""A dataset mainstem has never seen, end to end, by configuration alone: init, infer the
contract from a sample, declare the training in params.yaml, submit, process, retrain, promote.

The dataset is made here: house listings with a text key, a city, a price to predict (regression)
and, in one variant, a photo per listing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mainstem.cli import main as cli
from mainstem.durable import read_json
from mainstem.params import load_params
from mainstem.training.registry import connect, find_experiment, resolve_production, tracking_uri

CITIES = ["lyon", "nantes", "paris"]


@pytest.fixture(autouse=True)
def local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "AIRFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)


def _listings(folder: Path, first: int, rows: int, photos: bool) -> Path:
    """A delivery of listings: the price follows area, rooms, city and the photo's brightness.

    The sample the contract is inferred from holds the listings of both batches.
    """
    folder.mkdir(parents=True)
    header = ["listing_ref", "city", "area_m2", "rooms", "price_keur"] + (
        ["photo"] if photos else []
    )
    records = []
    for index in range(first, first + rows):
        rng = np.random.default_rng(index)  # a listing is the same in the sample and its batch
        city = CITIES[index % 3]
        area = float(np.round(rng.uniform(20, 200), 1))
        rooms = int(rng.integers(1, 7))
        light = float(rng.uniform(0.2, 0.9))
        price = 5.0 * area + (300.0 if city == "paris" else 0.0) + 15 * rooms + 50 * light
        row = [f"L-{index:05d}", city, area, rooms, float(np.round(price + rng.normal(0, 5), 1))]
        if photos:
            (folder / "photos").mkdir(exist_ok=True)
            grey = int(255 * light)
            Image.new("RGB", (24, 24), (grey, grey, grey)).save(folder / f"photos/{index}.png")
            row.append(f"photos/{index}.png")
        records.append(row)
    with open(folder / "listings.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(records)
    return folder


def _review(contract: Path) -> None:
    """What the person does after reading the draft: confirm it, which releases it."""
    lines = contract.read_text(encoding="utf-8").splitlines(keepends=True)
    contract.write_text("".join(lines[2:]), encoding="utf-8")


def _declare_training(workspace: Path, photos: bool) -> None:
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    features: list[object] = ["area_m2", "rooms", "city"]
    if photos:
        features.append({"photo": "mean_rgb"})
    params["train"].update(
        task="regression",
        label="price_keur",
        features=features,
        eval_metric="rmse",
        model_version="linear",
        test_fraction=0.3,
    )
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def _processed(tmp_path: Path, photos: bool) -> Path:
    """init, infer, review, declare, then two batches submitted and processed."""
    workspace = tmp_path / "houses"
    cli(["init", str(workspace), "--dataset", "listings"])
    assert load_params(workspace).remote.url == "../houses-remote"

    sample = _listings(tmp_path / "sample", 1, 120, photos)
    where = ["--workspace", str(workspace)]
    cli(["contract", "infer", str(sample), "--dataset", "listings", "--key", "listing_ref", *where])
    contract = workspace / "contracts/listings/v1.yaml"
    inferred = yaml.safe_load(contract.read_text(encoding="utf-8"))
    assert ("photo" in (inferred["contract"].get("images") or {})) == photos
    _review(contract)
    _declare_training(workspace, photos)
    cli(["pipeline", "commit", *where])  # the reviewed contract and the training, recorded

    for number, (first, rows) in enumerate([(1, 60), (61, 60)], start=1):
        batch = _listings(tmp_path / f"batch-{number}", first, rows, photos)
        cli(["submit", *where, "--name", f"batch-{number}", str(batch)])
        cli(["process", *where])
    assert read_json(load_params(workspace).merge.metrics_file)["master_rows"] == 120
    return workspace


@pytest.mark.parametrize("photos", [True, False], ids=["with_images", "without_images"])
def test_an_unseen_dataset_goes_from_init_to_promotion(
    tmp_path: Path, photos: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = _processed(tmp_path, photos)
    params = load_params(workspace)
    capsys.readouterr()
    cli(["retrain", "run", "--workspace", str(workspace), "--threshold", "100"])
    out = capsys.readouterr().out
    assert "RETRAIN" in out
    assert "rmse=" in out

    production = resolve_production(
        connect(tracking_uri(params)), "listings-model", params.train.production_alias
    )
    assert production is not None
    assert production.feature_version == params.train.feature_version
    assert production.metrics["rmse"] < 30.0  # the price is learnable from what was declared


def _set_train(workspace: Path, **values: object) -> None:
    """Change the declared training and record the change, as an operator must before a run."""
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["train"].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    cli(["pipeline", "commit", "--workspace", str(workspace)])


def test_a_bad_declaration_or_a_failed_training_is_not_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = _processed(tmp_path, photos=False)
    run = ["retrain", "run", "--workspace", str(workspace), "--threshold", "100"]

    _set_train(workspace, label="asking_price")
    capsys.readouterr()
    cli(run)
    out = capsys.readouterr().out
    assert "no retrain - training cannot start: train.label 'asking_price' is not a column" in out
    assert "contract listings/v1" in out
    assert "fix: set train.label" in out
    params = load_params(workspace)
    assert find_experiment(connect(tracking_uri(params)), params.train.experiment) is None

    _set_train(workspace, label="price_keur", test_fraction=0.001)  # nothing left to test on
    with pytest.raises(SystemExit):
        cli(run)
    capsys.readouterr()
    cli(run)
    out = capsys.readouterr().out
    assert "no retrain - training failed for master " in out
    assert "fix: the test side of the split is empty (120 rows, train.test_fraction 0.001)" in out

    _set_train(workspace, test_fraction=0.3)  # the configuration changed: it is tried again
    cli(run)
    assert "RETRAIN" in capsys.readouterr().out


def test_the_costs_example_trains_a_regression_and_promotes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = tmp_path / "costs"
    cli(["init", str(workspace), "--dataset", "costs"])
    cli(["samples", "--dataset", "costs", str(tmp_path / "samples")])
    _set_train(
        workspace,
        task="regression",
        label="cost_keur",
        features=["floor_area_m2", "storeys", "region", "building_type"],
        eval_metric="rmse",
        model_version="random_forest",
    )
    where = ["--workspace", str(workspace)]
    for batch in ("batch-001", "batch-002"):
        cli(["submit", *where, "--name", batch, str(tmp_path / "samples" / batch)])
        cli(["process", *where])
    capsys.readouterr()
    cli(["retrain", "run", *where, "--threshold", "100"])
    assert "'production' moved to it" in capsys.readouterr().out
    params = load_params(workspace)
    production = resolve_production(
        connect(tracking_uri(params)), "costs-model", params.train.production_alias
    )
    assert production is not None
    assert production.model_version == "random_forest"
