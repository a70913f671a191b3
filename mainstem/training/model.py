"""Training the grade model: the request that asks for it, the features, the split, fit and scores.

In: the train request (parsed JSON), `dvc.lock`, the master as a DataFrame, the photos' bytes, and
the versions and seed from params. Out: a checked request and its id (a hash of its content, so
the same request always has the same id), a feature matrix, a split that keeps each row on its
side as the master grows, a fitted scikit-learn model and its scores, and the params, metrics and
tags of its MLflow run. No file I/O and no MLflow here: `stages/train.py` reads the inputs and
`registry` records the run.

Each version names code: `feature_version`, `split_version` and `model_version` select the
functions below, so a run's three params say exactly how its model was made.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mainstem.durable import canonical_json
from mainstem.errors import TrainingError
from mainstem.params import TrainParams

LABEL = "grade"
KEY = "item_id"
FEATURES = {"f1": ("weight_g", "diameter_mm", "mean_r", "mean_g", "mean_b")}
SPLITS = ("s1",)
MODELS = ("m1",)
QUALITY_METRICS = ("accuracy", "f1_macro")
COUNT_METRICS = ("master_rows", "rows_train", "rows_test")
_MIN_TRAIN_ROWS = 10


@dataclass(frozen=True)
class TrainRequest:
    """A decision to train on one exact master, as written to `train.request_file`."""

    requested_at: str
    requested_by: str
    master_md5: str
    master_rows: int
    reason: str
    decision: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_request(value: Any) -> TrainRequest | None:
    """The request in a parsed request file; None for `{}`, which means "no training requested"."""
    if value == {}:
        return None
    if not isinstance(value, dict):
        raise TrainingError(f"the train request must be a JSON object, got {type(value).__name__}")
    fields = TrainRequest.__dataclass_fields__
    missing = sorted(set(fields) - set(value))
    if missing:
        raise TrainingError(f"the train request lacks {', '.join(missing)}")
    rows = value["master_rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise TrainingError(f"the train request's master_rows must be a count, got {rows!r}")
    return TrainRequest(**{name: value[name] for name in fields})


def request_id(request: TrainRequest) -> str:
    """The request's id: the SHA-256 of its canonical JSON.

    Derived from the content, so a request file written before ids existed has one too, and
    running the train stage again on the same request finds the training that served it.
    """
    return hashlib.sha256(canonical_json(request.to_json())).hexdigest()


def master_hash(lock: Any, master_path: str) -> str:
    """The DVC hash `dvc.lock` records for the master, the output of stage `merge`."""
    try:
        outs = lock["stages"]["merge"]["outs"]
        return str(next(out["md5"] for out in outs if out["path"] == master_path))
    except (KeyError, TypeError, StopIteration) as exc:
        raise TrainingError(
            f"dvc.lock records no hash for {master_path}; run `dvc repro merge` first"
        ) from exc


def check_request(request: TrainRequest, master_md5: str, master_rows: int) -> None:
    """Refuse to train on a master other than the one the request was made for."""
    if request.master_md5 != master_md5 or request.master_rows != master_rows:
        raise TrainingError(
            f"the master changed since training was requested at {request.requested_at} "
            f"({request.master_rows} rows, {request.master_md5}; now {master_rows} rows, "
            f"{master_md5}); ask the retrain policy again"
        )


def mean_rgb(data: bytes) -> tuple[float, float, float]:
    """The mean red, green and blue of one canonical photo, each in 0..1."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    red, green, blue = pixels.reshape(-1, 3).mean(axis=0) / 255.0
    return float(red), float(green), float(blue)


def feature_matrix(
    master: pd.DataFrame, colours: np.ndarray, feature_version: str
) -> tuple[np.ndarray, list[str]]:
    """The model's input columns for each master row, and their names."""
    if feature_version not in FEATURES:
        raise TrainingError(
            f"train.feature_version '{feature_version}' is unknown; known: {', '.join(FEATURES)}"
        )
    if len(colours) != len(master):
        raise TrainingError(f"{len(colours)} photo colours for {len(master)} master rows")
    names = list(FEATURES[feature_version])
    tabular = master[["weight_g", "diameter_mm"]].to_numpy(dtype=np.float64)
    return np.column_stack([tabular, np.asarray(colours, dtype=np.float64).reshape(-1, 3)]), names


def held_out(keys: Iterable[Any], seed: int, split_version: str, fraction: float) -> np.ndarray:
    """True for the rows held out for testing.

    A row's side depends only on its key, the seed and the split version, never on the other
    rows, so rows keep their side when the master grows and scores of successive runs compare.
    """
    if split_version not in SPLITS:
        raise TrainingError(
            f"train.split_version '{split_version}' is unknown; known: {', '.join(SPLITS)}"
        )
    limit = int(fraction * 2**64)
    sides = []
    for key in keys:
        digest = hashlib.sha256(f"{split_version}:{seed}:{key}".encode()).digest()
        sides.append(int.from_bytes(digest[:8], "big") < limit)
    return np.array(sides, dtype=bool)


def fit_model(model_version: str, features: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    """A fitted scikit-learn estimator of the given model version."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model_version not in MODELS:
        raise TrainingError(
            f"train.model_version '{model_version}' is unknown; known: {', '.join(MODELS)}"
        )
    classes = sorted(set(labels.tolist()))
    if len(labels) < _MIN_TRAIN_ROWS or len(classes) < 2:
        raise TrainingError(
            f"the training side has {len(labels)} rows of grade(s) {', '.join(classes) or 'none'}; "
            f"training needs at least {_MIN_TRAIN_ROWS} rows and two grades"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    return model.fit(features, labels)


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Quality on the held-out side."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(truth) == 0:
        raise TrainingError("the test side of the split is empty; the master is too small")
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


@dataclass(frozen=True)
class Fitted:
    """A fitted model, the features it takes, the rows held out from it and its scores there.

    `sample` is the first rows of the feature matrix: an input example for the logged model.
    """

    model: Any
    feature_names: list[str]
    test: np.ndarray
    quality: dict[str, float]
    sample: np.ndarray


def fit_and_score(train: TrainParams, master: pd.DataFrame, colours: np.ndarray) -> Fitted:
    """Features, split, fit on one side and score on the other, as the params' versions say."""
    features, names = feature_matrix(master, colours, train.feature_version)
    labels = master[LABEL].astype(str).to_numpy()
    test = held_out(master[KEY], train.seed, train.split_version, train.test_fraction)
    model = fit_model(train.model_version, features[~test], labels[~test], train.seed)
    quality = scores(labels[test], model.predict(features[test]))
    return Fitted(model, names, test, quality, features[:5])


def run_record(
    train: TrainParams, fitted: Fitted, master_rows: int, tags: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The params, metrics and tags of the MLflow run for one training.

    `master_rows` is the DVC metric the request was checked against; the policy later subtracts
    it from the current count, so it must be that figure and not a recount.
    """
    return {
        "params": {
            "feature_version": train.feature_version,
            "split_version": train.split_version,
            "model_version": train.model_version,
            "seed": train.seed,
            "test_fraction": train.test_fraction,
            "features": ",".join(fitted.feature_names),
        },
        "metrics": {
            "master_rows": master_rows,
            "rows_train": int((~fitted.test).sum()),
            "rows_test": int(fitted.test.sum()),
            **fitted.quality,
        },
        "tags": dict(tags),
    }


def recorded_metrics(logged: dict[str, float]) -> dict[str, int | float]:
    """The metrics of `run_record` back from a logged run: MLflow keeps every metric as a float,
    so the counts become ints again and the stage's metrics file reads the same as the first time.
    """
    missing = [name for name in (*COUNT_METRICS, *QUALITY_METRICS) if name not in logged]
    if missing:
        raise TrainingError(f"the training run logged no metric {', '.join(missing)}")
    return {
        **{name: int(logged[name]) for name in COUNT_METRICS},
        **{name: logged[name] for name in QUALITY_METRICS},
    }
