"""Training's pure parts: the request, the master's hash, features, the split, fit and scores."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mainstem.errors import TrainingError
from mainstem.training.model import (
    TrainRequest,
    check_request,
    feature_matrix,
    fit_model,
    held_out,
    master_hash,
    mean_rgb,
    parse_request,
    scores,
)

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
    assert isinstance(request, TrainRequest) and request.to_json() == REQUEST


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


def test_features_are_tabular_columns_then_colours() -> None:
    master = pd.DataFrame({"weight_g": [100.0, 200.0], "diameter_mm": [50.0, 60.0]})
    colours = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    matrix, names = feature_matrix(master, colours, "f1")
    assert names == ["weight_g", "diameter_mm", "mean_r", "mean_g", "mean_b"]
    assert matrix.tolist() == [[100.0, 50.0, 0.1, 0.2, 0.3], [200.0, 60.0, 0.4, 0.5, 0.6]]
    with pytest.raises(TrainingError, match="feature_version 'f9' is unknown"):
        feature_matrix(master, colours, "f9")


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


def test_fit_needs_two_grades() -> None:
    features = np.arange(40, dtype=float).reshape(20, 2)
    with pytest.raises(TrainingError, match="two grades"):
        fit_model("m1", features, np.array(["A"] * 20), seed=1)
    with pytest.raises(TrainingError, match="model_version 'm9' is unknown"):
        fit_model("m9", features, np.array(["A", "B"] * 10), seed=1)


def test_fit_and_score_a_separable_problem() -> None:
    features = np.array([[float(i)] for i in range(40)])
    labels = np.array(["A" if i < 20 else "B" for i in range(40)])
    model = fit_model("m1", features, labels, seed=1)
    assert scores(labels, model.predict(features)) == {"accuracy": 1.0, "f1_macro": 1.0}
    with pytest.raises(TrainingError, match="test side of the split is empty"):
        scores(labels[:0], labels[:0])
