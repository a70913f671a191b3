"""The train stage's work: train on the master a request names, log it, register it, publish it.

In: the workspace's params (the train request, the master and its DVC lock entry, the MLflow
store). Out: the model folder (`train.model_dir`, the registered model's own files) and the flat
metrics the stage writes to `train.metrics_file`. With no request (`{}`) it trains nothing and
returns `{"trained": false}`, so the stage's outputs are the same on every such run. The request
is checked against the master first: training never runs on a master other than the one decided.

A request is served once. Its training run carries the request's id as a tag; when the stage runs
again on the same request (`dvc repro --force train`, a retried task) it finds that run, trains and
registers nothing, restores the model folder from the registered version and returns the same
metrics as the first time, so the stage's outputs, and `dvc.lock`, do not change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from mainstem.commands import git
from mainstem.durable import fresh_dir, publish_dir, read_json, staging_path
from mainstem.errors import MainstemError
from mainstem.metrics import read_metric
from mainstem.params import Params
from mainstem.training.failures import declared_contract
from mainstem.training.model import (
    IMAGE_FEATURES,
    TrainRequest,
    check_request,
    fit_and_score,
    master_hash,
    parse_request,
    recorded_metrics,
    request_id,
    run_record,
)
from mainstem.training.registry import (
    MASTER_MD5_TAG,
    REQUEST_ID_TAG,
    Registration,
    TrainingRun,
    connect,
    ensure_experiment,
    experiment_name,
    record_training,
    restore_model,
    served_request,
)
from mainstem.training.registry import tracking_uri as store_uri
from mainstem.validation.image_store import StoredImages

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def _check_master(params: Params, request: TrainRequest) -> None:
    """Refuse a request made for another master than the one `dvc.lock` and its metrics hold."""
    root = params.root
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    master_md5 = master_hash(lock, params.merge.master_dir.relative_to(root).as_posix())
    metrics_file = params.merge.metrics_file.relative_to(root).as_posix()
    master_rows = int(read_metric(root, metrics_file, "master_rows"))
    check_request(request, master_md5, master_rows)


def _read_master(params: Params, master_rows: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The master and, per declared image feature, its values for each row's image."""
    master = pd.read_parquet(params.merge.master_dir)
    if len(master) != master_rows:
        raise MainstemError(
            f"{params.merge.master_dir} holds {len(master)} rows, "
            f"{params.merge.metrics_file.relative_to(params.root).as_posix()} says "
            f"{master_rows}; run `dvc checkout` to restore the tracked master"
        )
    store = StoredImages(params.validate.validated_dir, params.root)
    images = {}
    for feature in params.train.features:
        if feature.image is None:
            continue
        names = master[feature.column].astype(str).tolist()
        found = store.read_many(names)
        missing = sorted(set(names) - set(found))
        if missing:
            raise MainstemError(
                f"image {missing[0]} of column {feature.column} is in no validated batch's pack "
                f"({len(missing)} missing); run `mainstem upgrade --fetch-raw`, then train again"
            )
        extract = IMAGE_FEATURES[feature.image]
        images[feature.column] = np.array([extract(found[name]) for name in names])
    return master, images


def _stage_metrics(outcome: TrainingRun, task: str) -> dict[str, Any]:
    return {
        "trained": True,
        "run_id": outcome.run_id,
        "model_version": outcome.model_version,
        "promoted": outcome.promotion.promoted,
        "production_version": outcome.promotion.alias_version,
        **recorded_metrics(outcome.metrics, task),
    }


def _train(
    params: Params, request: TrainRequest, client: MlflowClient, registration: Registration
) -> TrainingRun:
    """Fit, log, register and publish a new model for `request`."""
    train, root = params.train, params.root
    key = declared_contract(params).primary_key
    master, images = _read_master(params, request.master_rows)
    fitted = fit_and_score(train, key, master, images)
    tags = {
        REQUEST_ID_TAG: request_id(request),
        "git_commit": git(["rev-parse", "HEAD"], root).stdout.strip(),
        MASTER_MD5_TAG: request.master_md5,
        "requested_at": request.requested_at,
        "requested_by": request.requested_by,
        "request_reason": request.reason,
    }
    run = run_record(train, fitted, request.master_rows, tags)
    staged = staging_path(train.model_dir, "train")
    fresh_dir(staged).rmdir()
    outcome = record_training(client, registration, fitted, run, staged)
    publish_dir(staged, train.model_dir)
    return outcome


def _restore(params: Params, client: MlflowClient, served: TrainingRun) -> None:
    """Put the registered version's files back in the model folder, as its training left them."""
    staged = staging_path(params.train.model_dir, "train")
    fresh_dir(staged).rmdir()
    restore_model(client, served.model_uri, staged)
    publish_dir(staged, params.train.model_dir)


def run_requested_training(params: Params) -> dict[str, Any]:
    """Carry out the training the request file asks for, once; the metrics to record."""
    train = params.train
    request = parse_request(read_json(train.request_file))
    if request is None:
        log.info("no training requested (%s is {})", train.request_file.name)
        fresh_dir(train.model_dir)
        return {"trained": False}
    declared_contract(params)
    _check_master(params, request)
    client = connect(store_uri(params))
    registration = Registration(
        ensure_experiment(client, experiment_name(params)),
        train.model_name,
        train.production_alias,
        train.eval_metric,
        train.higher_is_better,
    )
    served = served_request(client, registration, request_id(request))
    if served is not None:
        log.info(
            "request %s was served by run %s (version %s); restoring its model, training nothing",
            request_id(request)[:12],
            served.run_id,
            served.model_version,
        )
        _restore(params, client, served)
        return _stage_metrics(served, train.task)
    outcome = _train(params, request, client, registration)
    log.info(
        "run %s, version %s: %s", outcome.run_id, outcome.model_version, outcome.promotion.reason
    )
    return _stage_metrics(outcome, train.task)
