"""Training's pure parts: the request and its id, the master's hash, features, the split, fit and
scores, and the run's record."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mainstem.errors import TrainingError
from mainstem.params import FeatureSpec, TrainParams, load_params
from mainstem.training.model import (
    TrainRequest,
    check_request,
    feature_matrix,
    fit_and_score,
    fit_model,
    grey_4x4,
    held_out,
    master_hash,
    mean_rgb,
    parse_request,
    recorded_metrics,
    request_id,
    run_record,
    scores,
)
from tests.conftest import ROOT

REQUEST = {
    "requested_at": "2026-11-27T12:00:00+00:00",
    "requested_by": "test",
    "master_md5": "abc.dir",
    "master_rows": 10,
    "reason": "bootstrap",
    "decision": {"retrain": True},
}


def test_empty_request_means_no_training() -> None:
    assert parse_request({}) is None


def test_request_round_trips() -> None:
    request = parse_request(REQUEST)
    assert isinstance(request, TrainRequest)
    assert request.to_json() == REQUEST


def test_a_requests_id_is_the_sha256_of_its_canonical_json() -> None:
    request = parse_request(REQUEST)
    assert request is not None
    # Pinned: a request file written by an older mainstem must keep its id, or its training
    # would not be found again and would run a second time.
    assert request_id(request) == (
        "2c679315f3ad4a8c76a48484bd471aff2eec091ec787b983e8c63bb9857f1112"
    )


def test_a_requests_id_does_not_depend_on_key_order() -> None:
    one = parse_request({**REQUEST, "decision": {"retrain": True, "basis": "bootstrap"}})
    two = parse_request(
        dict(reversed({**REQUEST, "decision": {"basis": "bootstrap", "retrain": True}}.items()))
    )
    assert one is not None
    assert two is not None
    assert request_id(one) == request_id(two)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("requested_at", "2026-11-27T12:00:01+00:00"),
        ("requested_by", "someone else"),
        ("master_md5", "abd.dir"),
        ("master_rows", 11),
        ("reason", "growth"),
        ("decision", {"retrain": True, "basis": "growth"}),
    ],
)
def test_any_change_to_a_request_changes_its_id(field: str, value: object) -> None:
    request = parse_request(REQUEST)
    changed = parse_request({**REQUEST, field: value})
    assert request is not None
    assert changed is not None
    assert request_id(changed) != request_id(request)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a JSON object"),
        ({"master_rows": 3}, "lacks decision, master_md5"),
        ({**REQUEST, "master_rows": "10"}, "master_rows must be a count"),
        ({**REQUEST, "master_rows": -1}, "master_rows must be a count"),
    ],
)
def test_malformed_request_is_an_error(value: object, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        parse_request(value)


def test_request_for_another_master_is_refused() -> None:
    request = parse_request(REQUEST)
    assert request is not None
    check_request(request, "abc.dir", 10)
    with pytest.raises(TrainingError, match="master changed since training was requested"):
        check_request(request, "def.dir", 10)
    with pytest.raises(TrainingError, match="now 11 rows"):
        check_request(request, "abc.dir", 11)


def test_master_hash_comes_from_the_merge_outs_of_dvc_lock() -> None:
    lock = {
        "stages": {
            "merge": {
                "outs": [
                    {"path": "data/master.parquet", "md5": "m.dir"},
                    {"path": "metrics/master.json", "md5": "x"},
                ]
            }
        }
    }
    assert master_hash(lock, "data/master.parquet") == "m.dir"
    with pytest.raises(TrainingError, match="run `dvc repro merge` first"):
        master_hash({"stages": {}}, "data/master.parquet")


def test_mean_rgb_of_a_solid_photo() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 51)).save(buffer, format="PNG")
    assert mean_rgb(buffer.getvalue()) == pytest.approx((1.0, 0.0, 0.2))


PRODUCE_FEATURES = (
    FeatureSpec("weight_g"),
    FeatureSpec("diameter_mm"),
    FeatureSpec("image_file", "mean_rgb"),
)


def test_features_are_the_declared_columns_in_order() -> None:
    master = pd.DataFrame({"weight_g": [100.0, 200.0], "diameter_mm": [50.0, 60.0]})
    colours = {"image_file": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])}
    matrix, names = feature_matrix(master, PRODUCE_FEATURES, colours)
    assert names == ["weight_g", "diameter_mm", "image_file.r", "image_file.g", "image_file.b"]
    assert matrix.tolist() == [[100.0, 50.0, 0.1, 0.2, 0.3], [200.0, 60.0, 0.4, 0.5, 0.6]]


def test_a_text_feature_is_one_hot_and_a_missing_number_the_median() -> None:
    master = pd.DataFrame({"city": ["paris", "lyon", None], "rooms": [1.0, None, 3.0]})
    matrix, names = feature_matrix(master, (FeatureSpec("city"), FeatureSpec("rooms")), {})
    assert names == ["city=lyon", "city=paris", "rooms"]
    assert matrix.tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]


def test_a_grey_thumbnail_has_sixteen_values() -> None:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 51).save(buffer, format="PNG")
    assert grey_4x4(buffer.getvalue()) == pytest.approx((0.2,) * 16)


@given(st.lists(st.integers(min_value=0, max_value=10**9), unique=True, max_size=50))
def test_a_rows_side_does_not_depend_on_the_other_rows(keys: list[int]) -> None:
    together = held_out(keys, 7, "s1", 0.25).tolist()
    alone = [bool(held_out([key], 7, "s1", 0.25)[0]) for key in keys]
    assert together == alone


def test_split_holds_out_about_the_fraction_and_follows_the_seed() -> None:
    keys = range(4000)
    side = held_out(keys, 7, "s1", 0.25)
    assert 0.22 < side.mean() < 0.28
    assert (held_out(keys, 8, "s1", 0.25) != side).any()
    with pytest.raises(TrainingError, match="split_version 's9' is unknown"):
        held_out(keys, 7, "s9", 0.25)


def _train(**changes: object) -> TrainParams:
    return replace(load_params(ROOT).train, **changes)


def test_fit_needs_two_grades() -> None:
    features = np.arange(40, dtype=float).reshape(20, 2)
    with pytest.raises(TrainingError, match="needs two values of grade"):
        fit_model(_train(), features, np.array(["A"] * 20))
    with pytest.raises(TrainingError, match="model_version 'm9' is unknown for classification"):
        fit_model(_train(model_version="m9"), features, np.array(["A", "B"] * 10))


def test_fit_and_score_a_separable_problem() -> None:
    features = np.array([[float(i)] for i in range(40)])
    labels = np.array(["A" if i < 20 else "B" for i in range(40)])
    model = fit_model(_train(), features, labels)
    assert scores("classification", labels, model.predict(features)) == {
        "accuracy": 1.0,
        "f1_macro": 1.0,
    }
    with pytest.raises(TrainingError, match="test side of the split is empty"):
        scores("classification", labels[:0], labels[:0])


@pytest.mark.parametrize("model_version", ["linear", "random_forest", "gradient_boosting"])
def test_each_regression_model_learns_a_line(model_version: str) -> None:
    features = np.array([[float(i)] for i in range(60)])
    prices = 3.0 * features[:, 0] + 10.0
    train = _train(task="regression", label="price", model_version=model_version)
    model = fit_model(train, features, prices)
    quality = scores("regression", prices, model.predict(features))
    assert set(quality) == {"rmse", "mae"}
    assert quality["rmse"] < 6.0


def _master(rows: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A master of two grades that weight alone tells apart, and grey photos."""
    heavy = np.arange(rows) % 2 == 0
    master = pd.DataFrame(
        {
            "item_id": range(rows),
            "weight_g": np.where(heavy, 200.0, 100.0) + np.arange(rows) % 7,
            "diameter_mm": 50.0,
            "grade": np.where(heavy, "A", "B"),
        }
    )
    return master, {"image_file": np.full((rows, 3), 0.5)}


def test_fit_and_score_follow_the_params_versions_and_split() -> None:
    train = load_params(ROOT).train
    master, colours = _master(80)
    fitted = fit_and_score(train, "item_id", master, colours)
    expected_test = held_out(
        master["item_id"], train.seed, train.split_version, train.test_fraction
    )
    assert fitted.test.tolist() == expected_test.tolist()
    assert fitted.feature_names == list(feature_matrix(master, train.features, colours)[1])
    assert fitted.quality == {"accuracy": 1.0, "f1_macro": 1.0}
    assert fitted.sample.tolist() == feature_matrix(master, train.features, colours)[0][:5].tolist()


def test_the_run_record_counts_the_given_master_rows_and_both_sides() -> None:
    train = load_params(ROOT).train
    master, colours = _master(80)
    fitted = fit_and_score(train, "item_id", master, colours)
    run = run_record(train, fitted, 80, {"request_id": "abc"})
    assert run["metrics"]["master_rows"] == 80
    assert run["metrics"]["rows_train"] + run["metrics"]["rows_test"] == 80
    assert run["metrics"]["rows_test"] == int(fitted.test.sum())
    assert (
        run["params"]["features"] == "weight_g,diameter_mm,image_file.r,image_file.g,image_file.b"
    )
    assert run["tags"] == {"request_id": "abc"}


def test_recorded_metrics_read_back_as_they_were_recorded() -> None:
    train = load_params(ROOT).train
    fitted = fit_and_score(train, "item_id", *_master(80))
    metrics = run_record(train, fitted, 80, {})["metrics"]
    as_logged = {name: float(value) for name, value in metrics.items()}  # MLflow keeps floats
    back = recorded_metrics(as_logged, "classification")
    assert json.dumps(back, sort_keys=True) == json.dumps(metrics, sort_keys=True)
    with pytest.raises(TrainingError, match="logged no metric rows_test"):
        recorded_metrics({k: v for k, v in as_logged.items() if k != "rows_test"}, "classification")
