"""Typed access to params.yaml.

In: the path of a params.yaml. Out: frozen dataclasses, one per section, with every path resolved
against the workspace root. A missing key or a value of the wrong kind is a ParamsError naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mainstem.errors import ParamsError

PARAMS_FILE = "params.yaml"
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What `train:` may declare. The names are the contract between params.yaml and the training
# code, which maps each one to its implementation (mainstem/training/model.py).
TASK_MODELS = {
    "classification": ("linear", "random_forest", "gradient_boosting"),
    "regression": ("linear", "random_forest", "gradient_boosting"),
}
METRIC_DIRECTIONS = {  # True: higher is better
    "classification": {"f1_macro": True, "accuracy": True},
    "regression": {"rmse": False, "mae": False},
}
IMAGE_FEATURES = ("mean_rgb", "grey_4x4")

DEFAULT_DRIFT_REFERENCE = "models/drift_reference.json"
DEFAULT_S3_STAGING = "data/incoming"


@dataclass(frozen=True)
class IngestParams:
    incoming_dir: Path
    claimed_batch: Path
    raw_dir: Path
    quarantine_dir: Path
    stale_lock_seconds: int
    dead_owner_grace_seconds: int
    manifest_deadline_seconds: int
    # `ingest.incoming_dir: s3://bucket/prefix` puts the drop zone on S3; `incoming_dir` is then
    # the local folder a claimed batch is fetched into (`ingest.s3_staging_dir`).
    drop_zone_url: str = ""
    s3_endpoint_url: str = ""


@dataclass(frozen=True)
class ValidateParams:
    dataset: str
    contract_version: int
    validated_dir: Path
    image_workers: int
    contract_path: Path
    metrics_file: Path
    drift_reference: Path


@dataclass(frozen=True)
class MergeParams:
    master_dir: Path
    part_key_span: int
    hash_buckets: int
    metrics_file: Path


@dataclass(frozen=True)
class RemoteParams:
    name: str
    url: str
    endpointurl: str


@dataclass(frozen=True)
class FeatureSpec:
    """One declared feature: a column, and for an image column the image feature to compute."""

    column: str
    image: str | None = None

    def to_json(self) -> str | dict[str, str]:
        return self.column if self.image is None else {self.column: self.image}


@dataclass(frozen=True)
class TrainParams:
    task: str
    label: str
    features: tuple[FeatureSpec, ...]
    split_version: str
    model_version: str
    seed: int
    test_fraction: float
    experiment: str
    model_name: str
    production_alias: str
    eval_metric: str
    request_file: Path
    model_dir: Path
    metrics_file: Path
    tracking_db: Path

    @property
    def higher_is_better(self) -> bool:
        return METRIC_DIRECTIONS[self.task][self.eval_metric]

    @property
    def declared(self) -> dict[str, Any]:
        """What the model is made from, as declared: the task, the label and the features."""
        return {
            "task": self.task,
            "label": self.label,
            "features": [feature.to_json() for feature in self.features],
        }

    @property
    def feature_version(self) -> str:
        """Derived from the declared task, label and features, so it changes whenever they do."""
        text = json.dumps(self.declared, sort_keys=True, separators=(",", ":"))
        return "f-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Params:
    root: Path
    ingest: IngestParams
    validate: ValidateParams
    merge: MergeParams
    lineage_enabled: bool
    remote: RemoteParams
    train: TrainParams
    retrain_threshold_rows: int
    retrain_decision_file: Path
    retrain_training_timeout_seconds: int
    retrain_failure_file: Path
    retrain_drift: bool


class _Section:
    """Reads typed keys from one params section and names the key in every error."""

    def __init__(self, raw: dict[str, Any], name: str, root: Path) -> None:
        value = raw.get(name)
        if not isinstance(value, dict):
            raise ParamsError(f"params.yaml: section '{name}:' is missing or not a mapping")
        self._values = value
        self._name = name
        self._root = root

    def has(self, key: str) -> bool:
        return key in self._values

    def _get(self, key: str) -> Any:
        if key not in self._values:
            raise ParamsError(f"params.yaml: '{self._name}.{key}' is missing")
        return self._values[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise ParamsError(f"params.yaml: '{self._name}.{key}' must be a string, got {value!r}")
        return value

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ParamsError(
                f"params.yaml: '{self._name}.{key}' must be an integer >= {minimum}, got {value!r}"
            )
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params.yaml: '{self._name}.{key}' must be a number, got {value!r}")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise ParamsError(f"params.yaml: '{self._name}.{key}' must be true or false")
        return value

    def path(self, key: str) -> Path:
        return self._root / self.text(key)

    def choice(self, key: str, allowed: tuple[str, ...] | list[str]) -> str:
        value = self._get(key)
        if value not in allowed:
            raise ParamsError(
                f"params.yaml: '{self._name}.{key}' must be one of {', '.join(allowed)}, "
                f"got {value!r}"
            )
        return str(value)

    def features(self, key: str) -> tuple[FeatureSpec, ...]:
        """A list of column names, and `{column: image_feature}` for image columns."""
        value = self._get(key)
        where = f"params.yaml: '{self._name}.{key}'"
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{where} must be a non-empty list of columns, got {value!r}")
        found = [_feature(item, where) for item in value]
        columns = [feature.column for feature in found]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ParamsError(f"{where} lists {', '.join(repeated)} more than once")
        return tuple(found)


def _feature(item: object, where: str) -> FeatureSpec:
    if isinstance(item, str) and item:
        return FeatureSpec(item)
    if isinstance(item, dict) and len(item) == 1:
        ((column, image),) = item.items()
        if isinstance(column, str) and image in IMAGE_FEATURES:
            return FeatureSpec(column, str(image))
    raise ParamsError(
        f"{where}: {item!r} is neither a column name nor {{image_column: feature}} with a "
        f"feature from {', '.join(IMAGE_FEATURES)}"
    )


def _train_params(train: _Section) -> TrainParams:
    if "feature_version" in train._values:
        raise ParamsError(
            "params.yaml: 'train.feature_version' is derived from train.task, train.label and "
            "train.features now; remove the key"
        )
    fraction = train.number("test_fraction")
    if not 0.0 < fraction < 1.0:
        raise ParamsError(f"params.yaml: 'train.test_fraction' must be in (0, 1), got {fraction}")
    task = train.choice("task", tuple(TASK_MODELS))
    features = train.features("features")
    label = train.text("label")
    if label in {feature.column for feature in features}:
        raise ParamsError(f"params.yaml: 'train.features' lists the label {label!r}; remove it")
    return TrainParams(
        task=task,
        label=label,
        features=features,
        split_version=train.text("split_version"),
        model_version=train.choice("model_version", TASK_MODELS[task]),
        seed=train.integer("seed"),
        test_fraction=fraction,
        experiment=train.text("experiment"),
        model_name=train.text("model_name"),
        production_alias=train.text("production_alias"),
        eval_metric=train.choice("eval_metric", tuple(METRIC_DIRECTIONS[task])),
        request_file=train.path("request_file"),
        model_dir=train.path("model_dir"),
        metrics_file=train.path("metrics_file"),
        tracking_db=train.path("tracking_db"),
    )


def _on_s3(incoming: str) -> bool:
    return incoming.startswith("s3://")


def _local_drop_folder(ingest: _Section, drop_zone: str, root: Path) -> Path:
    """The drop folder on disk: `incoming_dir`, or with an S3 drop zone the folder a claimed
    batch is fetched into."""
    if not drop_zone:
        return ingest.path("incoming_dir")
    if ingest.has("s3_staging_dir"):
        return ingest.path("s3_staging_dir")
    return root / DEFAULT_S3_STAGING


def load_params(root: Path | str = ".") -> Params:
    """Read `<root>/params.yaml` into typed sections with paths resolved against root."""
    root = Path(root).resolve()
    path = root / PARAMS_FILE
    try:
        # libyaml's loader when PyYAML has it: params are read at every step, ~6x faster
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except FileNotFoundError as exc:
        raise ParamsError(f"{path} not found: run this from a mainstem workspace") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections")

    ingest = _Section(raw, "ingest", root)
    drop_zone = ingest.text("incoming_dir") if _on_s3(ingest.text("incoming_dir")) else ""
    validate = _Section(raw, "validate", root)
    merge = _Section(raw, "merge", root)
    lineage = _Section(raw, "lineage", root)
    remote = _Section(raw, "remote", root)
    train = _Section(raw, "train", root)
    retrain = _Section(raw, "retrain", root)
    dataset = validate.text("dataset")
    version = validate.integer("contract_version", minimum=1)
    return Params(
        root=root,
        ingest=IngestParams(
            incoming_dir=_local_drop_folder(ingest, drop_zone, root),
            claimed_batch=ingest.path("claimed_batch"),
            raw_dir=ingest.path("raw_dir"),
            quarantine_dir=ingest.path("quarantine_dir"),
            stale_lock_seconds=ingest.integer("stale_lock_seconds", minimum=1),
            dead_owner_grace_seconds=ingest.integer("dead_owner_grace_seconds"),
            manifest_deadline_seconds=ingest.integer("manifest_deadline_seconds"),
            drop_zone_url=drop_zone,
            s3_endpoint_url=ingest.text("s3_endpoint_url") if ingest.has("s3_endpoint_url") else "",
        ),
        validate=ValidateParams(
            dataset=dataset,
            contract_version=version,
            validated_dir=validate.path("validated_dir"),
            image_workers=validate.integer("image_workers"),
            contract_path=root / "contracts" / dataset / f"v{version}.yaml",
            metrics_file=validate.path("metrics_file"),
            # keys newer than a workspace's params.yaml read as their defaults (`mainstem upgrade`
            # then writes them, as dvc.yaml needs them)
            drift_reference=validate.path("drift_reference")
            if validate.has("drift_reference")
            else root / DEFAULT_DRIFT_REFERENCE,
        ),
        merge=MergeParams(
            master_dir=merge.path("master_dir"),
            part_key_span=merge.integer("part_key_span", minimum=1),
            hash_buckets=merge.integer("hash_buckets", minimum=1),
            metrics_file=merge.path("metrics_file"),
        ),
        lineage_enabled=lineage.flag("enabled"),
        remote=RemoteParams(
            name=remote.text("name"), url=remote.text("url"), endpointurl=remote.text("endpointurl")
        ),
        train=_train_params(train),
        retrain_threshold_rows=retrain.integer("threshold_rows"),
        retrain_decision_file=retrain.path("decision_file"),
        retrain_training_timeout_seconds=retrain.integer("training_timeout_seconds", minimum=1),
        retrain_failure_file=retrain.path("failure_file"),
        retrain_drift=retrain.flag("drift") if retrain.has("drift") else False,
    )
