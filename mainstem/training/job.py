"""The train stage's work: train on the master a request names, log it, register it, publish it.

In: the workspace's params (the train request, the master and its DVC lock entry, the MLflow
store). Out: the model folder (`train.model_dir`, the registered model's own files) and the flat
metrics the stage writes to `train.metrics_file`. With no request (`{}`) it trains nothing and
returns `{"trained": false}`, so the stage's outputs are the same on every such run. The request
is checked against the master first: training never runs on a master other than the one decided.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mainstem.commands import git
from mainstem.durable import fresh_dir, publish_dir, read_json, staging_path
from mainstem.errors import MainstemError
from mainstem.metrics import read_metric
from mainstem.params import Params
from mainstem.training.model import (
    KEY,
    LABEL,
    QUALITY_METRICS,
    check_request,
    feature_matrix,
    fit_model,
    held_out,
    master_hash,
    mean_rgb,
    parse_request,
    run_record,
    scores,
)
from mainstem.training.registry import connect, ensure_experiment, experiment_name, record_training
from mainstem.training.registry import tracking_uri as store_uri

log = logging.getLogger(__name__)


def run_requested_training(params: Params) -> dict[str, Any]:
    """Carry out the training the request file asks for; the metrics to record."""
    train = params.train
    request = parse_request(read_json(train.request_file))
    if request is None:
        log.info("no training requested (%s is {})", train.request_file.name)
        fresh_dir(train.model_dir)
        return {"trained": False}
    if train.eval_metric not in QUALITY_METRICS:
        raise MainstemError(
            f"params.yaml: train.eval_metric '{train.eval_metric}' is not one of "
            f"{', '.join(QUALITY_METRICS)}"
        )
    root = params.root
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    master_md5 = master_hash(lock, params.merge.master_dir.relative_to(root).as_posix())
    metrics_file = params.merge.metrics_file.relative_to(root).as_posix()
    master_rows = int(read_metric(root, metrics_file, "master_rows"))
    check_request(request, master_md5, master_rows)
    master = pd.read_parquet(params.merge.master_dir)
    if len(master) != master_rows:
        raise MainstemError(
            f"{params.merge.master_dir} holds {len(master)} rows, {metrics_file} says "
            f"{master_rows}; run `dvc checkout` to restore the tracked master"
        )

    images = params.validate.validated_dir / "images"
    colours = np.array([mean_rgb((images / name).read_bytes()) for name in master["image_file"]])
    features, names = feature_matrix(master, colours, train.feature_version)
    labels = master[LABEL].astype(str).to_numpy()
    test = held_out(master[KEY], train.seed, train.split_version, train.test_fraction)
    model = fit_model(train.model_version, features[~test], labels[~test], train.seed)
    quality = scores(labels[test], model.predict(features[test]))

    client = connect(store_uri(params))
    experiment_id = ensure_experiment(client, experiment_name(params))
    lineage = {
        "git_commit": git(["rev-parse", "HEAD"], root).stdout.strip(),
        "master_md5": master_md5,
        "requested_at": request.requested_at,
        "requested_by": request.requested_by,
        "request_reason": request.reason,
    }
    run = run_record(train, names, master_rows, test, quality, lineage)
    staged = staging_path(train.model_dir, "train")
    fresh_dir(staged).rmdir()
    registered = (train.model_name, train.production_alias, train.eval_metric)
    outcome = record_training(client, experiment_id, model, features[:5], run, registered, staged)
    publish_dir(staged, train.model_dir)
    log.info(
        "run %s, version %s: %s", outcome.run_id, outcome.model_version, outcome.promotion.reason
    )
    return {
        "trained": True,
        "run_id": outcome.run_id,
        "model_version": outcome.model_version,
        "promoted": outcome.promotion.promoted,
        "production_version": outcome.promotion.alias_version,
        **run["metrics"],
    }
