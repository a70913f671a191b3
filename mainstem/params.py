"""Typed access to params.yaml.

In: the path of a params.yaml. Out: frozen dataclasses, one per section, with every path resolved
against the workspace root. A missing key or a value of the wrong kind is a ParamsError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mainstem.errors import ParamsError

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class IngestParams:
    incoming_dir: Path
    claimed_batch: Path
    raw_dir: Path
    quarantine_dir: Path
    stale_lock_seconds: int
    dead_owner_grace_seconds: int
    manifest_deadline_seconds: int


@dataclass(frozen=True)
class ValidateParams:
    dataset: str
    contract_version: int
    validated_dir: Path
    image_workers: int
    contract_path: Path
    metrics_file: Path


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
class TrainParams:
    feature_version: str
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


class _Section:
    """Reads typed keys from one params section and names the key in every error."""

    def __init__(self, raw: dict[str, Any], name: str, root: Path) -> None:
        value = raw.get(name)
        if not isinstance(value, dict):
            raise ParamsError(f"params.yaml: section '{name}:' is missing or not a mapping")
        self._values = value
        self._name = name
        self._root = root

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


def load_params(root: Path | str = ".") -> Params:
    """Read `<root>/params.yaml` into typed sections with paths resolved against root."""
    root = Path(root).resolve()
    path = root / PARAMS_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParamsError(f"{path} not found: run this from a mainstem workspace") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections")

    ingest = _Section(raw, "ingest", root)
    validate = _Section(raw, "validate", root)
    merge = _Section(raw, "merge", root)
    lineage = _Section(raw, "lineage", root)
    remote = _Section(raw, "remote", root)
    train = _Section(raw, "train", root)
    retrain = _Section(raw, "retrain", root)
    dataset = validate.text("dataset")
    version = validate.integer("contract_version", minimum=1)
    fraction = train.number("test_fraction")
    if not 0.0 < fraction < 1.0:
        raise ParamsError(f"params.yaml: 'train.test_fraction' must be in (0, 1), got {fraction}")
    return Params(
        root=root,
        ingest=IngestParams(
            incoming_dir=ingest.path("incoming_dir"),
            claimed_batch=ingest.path("claimed_batch"),
            raw_dir=ingest.path("raw_dir"),
            quarantine_dir=ingest.path("quarantine_dir"),
            stale_lock_seconds=ingest.integer("stale_lock_seconds", minimum=1),
            dead_owner_grace_seconds=ingest.integer("dead_owner_grace_seconds"),
            manifest_deadline_seconds=ingest.integer("manifest_deadline_seconds"),
        ),
        validate=ValidateParams(
            dataset=dataset,
            contract_version=version,
            validated_dir=validate.path("validated_dir"),
            image_workers=validate.integer("image_workers"),
            contract_path=root / "contracts" / dataset / f"v{version}.yaml",
            metrics_file=validate.path("metrics_file"),
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
        train=TrainParams(
            feature_version=train.text("feature_version"),
            split_version=train.text("split_version"),
            model_version=train.text("model_version"),
            seed=train.integer("seed"),
            test_fraction=fraction,
            experiment=train.text("experiment"),
            model_name=train.text("model_name"),
            production_alias=train.text("production_alias"),
            eval_metric=train.text("eval_metric"),
            request_file=train.path("request_file"),
            model_dir=train.path("model_dir"),
            metrics_file=train.path("metrics_file"),
            tracking_db=train.path("tracking_db"),
        ),
        retrain_threshold_rows=retrain.integer("threshold_rows"),
        retrain_decision_file=retrain.path("decision_file"),
        retrain_training_timeout_seconds=retrain.integer("training_timeout_seconds", minimum=1),
    )
