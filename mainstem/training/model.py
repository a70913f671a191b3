"""Training the declared model: the request that asks for it, the features, the split, fit, scores.

In: the train request (parsed JSON), `dvc.lock`, the contract, the master as a DataFrame, the
images' bytes, and the task, label, features, versions and seed from params. Out: a checked
request and its id (a hash of its content, so the same request always has the same id), a feature
matrix, a split that keeps each row on its side as the master grows, a fitted scikit-learn model
and its scores, and the params, metrics and tags of its MLflow run. No file I/O and no MLflow
here: `stages/train.py` reads the inputs and `registry` records the run.

A run's three versions say exactly how its model was made: `feature_version` is derived from the
declared task, label and features (params.py), `split_version` selects the split below, and
`model_version` names an estimator of the task. `check_declared` refuses a label or feature the
contract does not have, or types wrongly, before anything is trained.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mainstem.durable import canonical_json
from mainstem.errors import TrainingConfigError, TrainingError
from mainstem.params import METRIC_DIRECTIONS, FeatureSpec, TrainParams
from mainstem.validation.contract import Contract

SPLITS = ("s1",)
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


def grey_4x4(data: bytes) -> tuple[float, ...]:
    """A 4x4 grey thumbnail of one canonical photo: 16 values in 0..1, row by row."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("L").resize((4, 4), Image.Resampling.BOX)
        pixels = np.asarray(small, dtype=np.float64).reshape(-1) / 255.0
    return tuple(float(value) for value in pixels)


IMAGE_FEATURES: dict[str, Callable[[bytes], tuple[float, ...]]] = {
    "mean_rgb": mean_rgb,
    "grey_4x4": grey_4x4,
}
_IMAGE_NAMES = {"mean_rgb": ("r", "g", "b"), "grey_4x4": tuple(f"px{i:02d}" for i in range(16))}
_LABEL_DTYPES = {"classification": ("str", "int64", "bool"), "regression": ("int64", "float64")}
_FEATURE_DTYPES = ("int64", "float64", "bool", "str")


def _config_error(contract: Contract, what: str, fix: str) -> TrainingConfigError:
    return TrainingConfigError(f"{what} in contract {contract.ref} ({contract.source}); fix: {fix}")


def check_declared(train: TrainParams, contract: Contract) -> None:
    """Refuse a label or feature the contract lacks or types wrongly, before any training."""
    columns = contract.dtypes
    images = {rule.column for rule in contract.images}
    if train.label not in columns:
        raise _config_error(
            contract,
            f"train.label '{train.label}' is not a column",
            f"set train.label in params.yaml to one of {', '.join(columns)}",
        )
    allowed = _LABEL_DTYPES[train.task]
    if columns[train.label] not in allowed:
        raise _config_error(
            contract,
            f"train.label '{train.label}' is {columns[train.label]}, and a {train.task} label "
            f"must be {' or '.join(allowed)}",
            "choose another label, or set train.task to "
            + ("regression" if train.task == "classification" else "classification"),
        )
    for feature in train.features:
        _check_feature(feature, contract, images)


def _check_feature(feature: FeatureSpec, contract: Contract, images: set[str]) -> None:
    column = feature.column
    if column not in contract.dtypes:
        raise _config_error(
            contract,
            f"train.features names '{column}', which is not a column",
            f"remove it from train.features, or use one of {', '.join(contract.dtypes)}",
        )
    if feature.image is not None and column not in images:
        raise _config_error(
            contract,
            f"train.features asks {feature.image} of '{column}', which is not an image column",
            f"list '{column}' as a plain column, or add contract.images.{column}",
        )
    if feature.image is None and column in images:
        raise _config_error(
            contract,
            f"train.features lists the image column '{column}' as a plain column",
            f"write it as `- {column}: mean_rgb` (or grey_4x4)",
        )
    if feature.image is None and contract.dtypes[column] not in _FEATURE_DTYPES:
        raise _config_error(
            contract,
            f"train.features lists '{column}', which is {contract.dtypes[column]}",
            f"remove '{column}' from train.features; features must be {', '.join(_FEATURE_DTYPES)}",
        )


def _column_block(values: pd.Series, column: str) -> tuple[np.ndarray, list[str]]:
    """A numeric column as is (missing values as the column's median), a text column one-hot."""
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        categories = sorted({str(v) for v in values.dropna()})
        text = values.astype(object)
        block = np.column_stack([(text == c).to_numpy(dtype=np.float64) for c in categories])
        return block.reshape(len(values), len(categories)), [f"{column}={c}" for c in categories]
    numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    fill = float(numbers.median()) if numbers.notna().any() else 0.0
    return numbers.fillna(fill).to_numpy().reshape(-1, 1), [column]


def feature_matrix(
    master: pd.DataFrame, features: tuple[FeatureSpec, ...], images: dict[str, np.ndarray]
) -> tuple[np.ndarray, list[str]]:
    """The model's input columns for each master row, and their names, in declared order.

    `images` holds, per image feature's column, one row of image values per master row.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for feature in features:
        source = master.columns if feature.image is None else images
        if feature.column not in source:
            raise TrainingError(f"the master has no column '{feature.column}'")
        if feature.image is None:
            block, block_names = _column_block(master[feature.column], feature.column)
        else:
            block = np.asarray(images[feature.column], dtype=np.float64).reshape(len(master), -1)
            block_names = [f"{feature.column}.{n}" for n in _IMAGE_NAMES[feature.image]]
        if block.shape[0] != len(master):
            raise TrainingError(
                f"{block.shape[0]} values of {feature.column} for {len(master)} rows"
            )
        blocks.append(block)
        names.extend(block_names)
    return np.column_stack(blocks) if blocks else np.empty((len(master), 0)), names


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


def _estimator(task: str, model_version: str, seed: int) -> Any:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimators = {
        ("classification", "linear"): lambda: make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)
        ),
        ("classification", "random_forest"): lambda: RandomForestClassifier(
            n_estimators=100, random_state=seed
        ),
        ("classification", "gradient_boosting"): lambda: GradientBoostingClassifier(
            random_state=seed
        ),
        ("regression", "linear"): lambda: make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
        ("regression", "random_forest"): lambda: RandomForestRegressor(
            n_estimators=100, random_state=seed
        ),
        ("regression", "gradient_boosting"): lambda: GradientBoostingRegressor(random_state=seed),
    }
    if (task, model_version) not in estimators:
        known = ", ".join(m for t, m in estimators if t == task)
        raise TrainingError(
            f"train.model_version '{model_version}' is unknown for {task}; known: {known}"
        )
    return estimators[(task, model_version)]()


def fit_model(
    train: TrainParams, features: np.ndarray, labels: np.ndarray, seed: int | None = None
) -> Any:
    """A fitted scikit-learn estimator of the task and model version `train` declares."""
    model = _estimator(train.task, train.model_version, train.seed if seed is None else seed)
    if len(labels) < _MIN_TRAIN_ROWS:
        raise TrainingError(
            f"the training side has {len(labels)} rows; training needs at least {_MIN_TRAIN_ROWS}"
        )
    if train.task == "classification":
        classes = sorted(set(labels.tolist()))
        if len(classes) < 2:
            raise TrainingError(
                f"the training side has only {train.label} {', '.join(classes) or 'none'}; "
                f"classification needs two values of {train.label}"
            )
    return model.fit(features, labels)


def scores(task: str, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Quality on the held-out side: every metric of the task."""
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

    if len(truth) == 0:
        raise TrainingError("the test side of the split is empty; the master is too small")
    if task == "regression":
        return {
            "rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
            "mae": float(mean_absolute_error(truth, predicted)),
        }
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


def labels_of(train: TrainParams, master: pd.DataFrame) -> np.ndarray:
    """The label column: text classes for classification, numbers for regression."""
    if train.label not in master.columns:
        raise TrainingError(f"the master has no label column '{train.label}'")
    if train.task == "classification":
        return master[train.label].astype(str).to_numpy()
    return pd.to_numeric(master[train.label]).to_numpy(dtype=np.float64)


def fit_and_score(
    train: TrainParams, key: str, master: pd.DataFrame, images: dict[str, np.ndarray]
) -> Fitted:
    """Features, split, fit on one side and score on the other, as the params declare."""
    features, names = feature_matrix(master, train.features, images)
    labels = labels_of(train, master)
    test = held_out(master[key], train.seed, train.split_version, train.test_fraction)
    if not test.any():
        raise TrainingError(
            f"the test side of the split is empty ({len(master)} rows, train.test_fraction "
            f"{train.test_fraction}); raise train.test_fraction or wait for more rows"
        )
    model = fit_model(train, features[~test], labels[~test])
    quality = scores(train.task, labels[test], model.predict(features[test]))
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
            "task": train.task,
            "label": train.label,
            "declared_features": json.dumps(train.declared["features"], sort_keys=True),
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


def quality_metrics(task: str) -> tuple[str, ...]:
    return tuple(METRIC_DIRECTIONS[task])


def recorded_metrics(logged: dict[str, float], task: str) -> dict[str, int | float]:
    """The metrics of `run_record` back from a logged run: MLflow keeps every metric as a float,
    so the counts become ints again and the stage's metrics file reads the same as the first time.
    """
    quality = quality_metrics(task)
    missing = [name for name in (*COUNT_METRICS, *quality) if name not in logged]
    if missing:
        raise TrainingError(f"the training run logged no metric {', '.join(missing)}")
    return {
        **{name: int(logged[name]) for name in COUNT_METRICS},
        **{name: logged[name] for name in quality},
    }
