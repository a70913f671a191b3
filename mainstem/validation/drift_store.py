"""Drift of each validated batch against the pinned reference.

In: the workspace's params and the contract. Out: a DriftMeter, which the store calls on each
batch it validates (and on the newest batch again when the pin moved): the batch's drift entry,
which the store writes into its `report.json` and as the drift section of its `report.html`. The
metrics carry the newest batch's, measured against the current pin, so an incremental run and a
rebuild give the same metrics.
The reference's images are read from the batches' packs through the index, with the statistics
their batch reports recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mainstem.params import Params
from mainstem.validation.contract import Contract
from mainstem.validation.drift import column_kinds, compare, drifted_columns, profile
from mainstem.validation.drift_pin import read_pin
from mainstem.validation.drift_reference import Reference, image_profiles, recorded_stats
from mainstem.validation.image_store import StoredImages
from mainstem.validation.layout import read_report


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


class RecordedStats(Mapping[str, dict[str, float]]):
    """Canonical name -> the statistics the report of the batch holding it recorded; each
    batch's report is read once, when one of its images is first asked for."""

    def __init__(self, images: StoredImages) -> None:
        self.images = images
        self.known: dict[str, dict[str, float]] = {}
        self._read: set[str] = set()

    def _load(self, name: str) -> None:
        record = self.images.where().get(name)
        if record is None or record.batch_id in self._read:
            return
        self._read.add(record.batch_id)
        report = read_report(self.images.validated_dir, record.batch_id, self.images.root)
        for known, stats in recorded_stats([report] if report else []).items():
            self.known.setdefault(known, stats)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self.known:
            self._load(name)
        return name in self.known

    def __getitem__(self, name: str) -> dict[str, float]:
        if name not in self:
            raise KeyError(name)
        return self.known[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)


@dataclass
class DriftMeter:
    """Measures batches against one reference, read on first use."""

    reference: Reference
    images: StoredImages
    stats: RecordedStats

    @property
    def pin_json(self) -> dict[str, Any] | None:
        return self.reference.pin.to_json() if self.reference.pin else None

    def __call__(
        self, accepted: pd.DataFrame, report: dict[str, Any], images: dict[str, bytes]
    ) -> dict[str, Any]:
        """The drift of the batch `report` describes; `images` are its canonical images, which
        may not be in the index yet."""
        self.images.fresh.update(images)
        self.stats.known.update(recorded_stats([report]))
        return measure(accepted, self.reference)


def drift_meter(params: Params, contract: Contract) -> DriftMeter:
    """The meter for the current pin (`validate.drift_reference`)."""
    kinds = column_kinds(
        contract.dtypes, contract.primary_key, tuple(rule.column for rule in contract.images)
    )
    images = StoredImages(params.validate.validated_dir, params.root)
    stats = RecordedStats(images)
    pin = read_pin(params.validate.drift_reference)
    return DriftMeter(Reference(pin, params.root, kinds, images.read, stats), images, stats)
