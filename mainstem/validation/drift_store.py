"""Drift for every batch in the validated store, against the pinned reference.

In: the workspace's params, the contract, and the reports `store.refresh` returned. Out: the same
reports, each with a `drift` entry, also written to the batch's `report.json` and as the drift
section of its `report.html`. A batch is measured when its stored drift names another pin than the
current one (or none): after it is validated, and again for every batch when the production model
changes. So an incremental run and a rebuild leave the same files, and the drift of a batch always
compares it with the model in production now.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mainstem.durable import write_bytes, write_json
from mainstem.params import Params
from mainstem.validation.contract import Contract
from mainstem.validation.drift import column_kinds, compare, drifted_columns, profile
from mainstem.validation.drift_pin import read_pin
from mainstem.validation.drift_reference import (
    Reference,
    image_profiles,
    recorded_stats,
    store_reader,
)
from mainstem.validation.drift_report import with_drift_section
from mainstem.validation.layout import ACCEPTED, IMAGES, REPORT, REPORT_HTML


def measure(accepted: pd.DataFrame, reference: Reference) -> dict[str, Any]:
    """One batch's drift: status, message, reference, the compared columns, the drifted ones."""
    pin = reference.pin
    found: dict[str, Any] = {
        "reference": pin.to_json() if pin else None,
        "status": "stable",
        "message": "",
        "columns": [],
        "drifted": [],
    }
    if pin is None:
        return {**found, "status": "no_reference", "message": reference.unavailable()}
    if accepted.empty:
        return {**found, "status": "no_rows", "message": "the batch has no accepted rows"}
    why = reference.unavailable()
    if why is not None or reference.profile is None:
        return {**found, "status": "reference_unavailable", "message": why}
    images = image_profiles(accepted, reference.kinds, reference.read_image, reference.known)
    batch = profile(accepted, reference.kinds, images)
    columns = [drift.to_json() for drift in compare(batch, reference.profile)]
    drifted = drifted_columns(columns)
    if drifted:
        found["status"] = "drifted"
        found["message"] = "drifted from the production model's training data: " + ", ".join(
            drifted
        )
    return {**found, "columns": columns, "drifted": drifted}


def update_drift(
    params: Params, contract: Contract, reports: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every report with its drift against the current pin; stale ones measured and stored."""
    validated = params.validate.validated_dir
    pin = read_pin(params.validate.drift_reference)
    kinds = column_kinds(
        contract.dtypes, contract.primary_key, tuple(rule.column for rule in contract.images)
    )
    reference = Reference(
        pin, params.root, kinds, store_reader(validated / IMAGES), recorded_stats(reports)
    )
    current = pin.to_json() if pin else None
    updated = []
    for report in reports:
        drift = report.get("drift")
        if drift is None or drift.get("reference") != current:
            folder = validated / str(report["batch_id"])
            accepted = pd.read_parquet(folder / ACCEPTED)
            if report["status"] != "accepted":
                accepted = accepted.iloc[0:0]
            drift = measure(accepted, reference)
            report = {**report, "drift": drift}
            # The page first: a crash in between leaves the old pin in report.json, so the next
            # run measures this batch again and rewrites both.
            page = with_drift_section((folder / REPORT_HTML).read_bytes(), drift)
            write_bytes(folder / REPORT_HTML, page)
            write_json(folder / REPORT, report)
        updated.append(report)
    return updated
