"""Drift: how far a batch's accepted rows sit from the data the production model was trained on.

In: a reference Profile (the master the production model's training run records, summarised per
column) and the batch's accepted rows, summarised the same way. Out: one ColumnDrift per compared
column: the statistic, its value, the threshold it was held to and whether it drifted, plus the few
figures a chart needs. Pure: no file is read here (`drift_reference` reads the master and images).

Effect sizes, never p-values: on a large batch a test of "same distribution" rejects nearly
everything, while an effect size says how large the change is.
- numeric column: the Wasserstein distance between batch and reference, divided by the reference's
  standard deviation (0.5 means the batch moved by half a reference sigma);
- categorical column: the population stability index (PSI) over the union of categories, with half
  a count added to every cell, so a category the reference never saw counts rather than divides by
  zero;
- image column: per image its brightness, contrast, mean red, green and blue, and the delivered
  pixel count, each compared like a numeric column.

A threshold is an effect size plus the noise floor of the statistic at the two sample sizes, the
value sampling alone reaches: `psi <= 0.1 + chi2_95%(k-1) * (1/n + 1/m)` (PSI behaves like a
chi-square over n and m under no change), and `w/sd <= 0.15 + 1.5 * sqrt(1/n + 1/m)` (the sampling
error of a Wasserstein distance shrinks as one over the root of the sample size). A fixed threshold
would either false-alarm on 100 rows or miss real change on 100,000; this one tends to the effect
size alone as batches grow. tests/unit/test_drift_calibration.py holds the calibration.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from mainstem.validation.images import IMAGE_STATS, pixel_stats

PSI_EFFECT = 0.1
PSI_NOISE_QUANTILE = 0.95
WASSERSTEIN_EFFECT = 0.15
WASSERSTEIN_NOISE = 1.5
MAX_CATEGORIES = 50  # more distinct values in the reference: an identifier, not a category
CHART_BINS = 12
NUMERIC_DTYPES = ("int64", "float64")
_SIZE = re.compile(r"\b(\d+)x(\d+)\b")
CATEGORICAL_DTYPES = ("str", "bool")


@dataclass(frozen=True)
class ColumnKinds:
    """Which contract columns are compared, and how; the key and dates are never compared."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    images: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """One side of a comparison: per column the values (numeric, image stats) or counts."""

    rows: int
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnDrift:
    """One compared column (or one statistic of an image column) and its verdict; `chart` holds
    the shares a chart draws, for a drifted column only."""

    column: str
    statistic: str
    value: float
    threshold: float
    drifted: bool
    chart: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "statistic": self.statistic,
            "value": _rounded(self.value),
            "threshold": _rounded(self.threshold),
            "drifted": self.drifted,
            "chart": self.chart,
        }


def column_kinds(
    dtypes: Mapping[str, str], primary_key: str, image_columns: tuple[str, ...]
) -> ColumnKinds:
    """The contract's columns by how drift compares them."""
    compared = {name: dtype for name, dtype in dtypes.items() if name != primary_key}
    return ColumnKinds(
        numeric=tuple(n for n, d in compared.items() if d in NUMERIC_DTYPES),
        categorical=tuple(
            n for n, d in compared.items() if d in CATEGORICAL_DTYPES and n not in image_columns
        ),
        images=tuple(n for n in image_columns if n in compared),
    )


def image_stat_name(column: str, stat: str) -> str:
    return f"{column}:{stat}"


def profile(
    frame: pd.DataFrame, kinds: ColumnKinds, image_stats: Mapping[str, pd.DataFrame]
) -> Profile:
    """The summary drift compares: numeric values without nulls, category counts (null is a
    category), and per image column its images' statistics (`image_stats[column]`, one row per
    image, the columns of IMAGE_STATS)."""
    numeric: dict[str, np.ndarray] = {}
    for column in kinds.numeric:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float, na_value=np.nan)
        numeric[column] = values[np.isfinite(values)]
    for column in kinds.images:
        stats = image_stats.get(column)
        for stat in IMAGE_STATS:
            if stats is None or stat not in stats:
                continue
            values = stats[stat].to_numpy(dtype=float, na_value=np.nan)
            numeric[image_stat_name(column, stat)] = values[np.isfinite(values)]
    categorical = {
        column: {
            str(value): int(count)
            for value, count in frame[column]
            .astype("object")
            .where(frame[column].notna(), "(null)")
            .astype(str)
            .value_counts()
            .items()
        }
        for column in kinds.categorical
    }
    return Profile(len(frame), numeric, categorical)


def image_stats(data: bytes, source: str | None) -> dict[str, float]:
    """One canonical image's IMAGE_STATS, decoded from its bytes; the delivered pixel count is
    read from its `source` ("JPEG 640x480 RGB"; NaN when unknown)."""
    size = _SIZE.search(source or "")
    pixels = float(int(size[1]) * int(size[2])) if size else math.nan
    with Image.open(io.BytesIO(data)) as im:
        return dict(zip(IMAGE_STATS, pixel_stats(im, pixels), strict=True))


def stats_frame(stats: Iterable[dict[str, float]]) -> pd.DataFrame:
    """Per-image statistics as one frame with the columns of IMAGE_STATS."""
    return pd.DataFrame(list(stats), columns=list(IMAGE_STATS), dtype=float)


def psi(batch: Mapping[str, int], reference: Mapping[str, int]) -> float:
    """The PSI of `batch` against `reference` over the union of their categories."""
    categories = sorted(set(batch) | set(reference))
    b = np.array([batch.get(c, 0) for c in categories], dtype=float) + 0.5
    r = np.array([reference.get(c, 0) for c in categories], dtype=float) + 0.5
    p, q = b / b.sum(), r / r.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def psi_threshold(categories: int, n: int, m: int) -> float:
    """PSI_EFFECT above what sampling alone reaches 1 time in 20 with `categories`, n and m."""
    from scipy.stats import chi2

    floor = float(chi2.ppf(PSI_NOISE_QUANTILE, max(categories - 1, 1))) * (1 / n + 1 / m)
    return PSI_EFFECT + floor


def spread(reference: np.ndarray) -> float:
    """The reference's standard deviation; 1 when it has none (every difference then counts)."""
    sd = float(np.std(reference)) if len(reference) else 0.0
    return sd if sd > 0 and math.isfinite(sd) else 1.0


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """The first Wasserstein distance between two samples: the area between their CDFs.

    The same value as `scipy.stats.wasserstein_distance`, which sorts its inputs by index first
    and takes several times as long on a batch of 100,000 rows.
    """
    u, v = np.sort(u), np.sort(v)
    points = np.sort(np.concatenate([u, v]))
    widths = np.diff(points)
    cdf_u = np.searchsorted(u, points[:-1], side="right") / len(u)
    cdf_v = np.searchsorted(v, points[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * widths))


def scaled_wasserstein(batch: np.ndarray, reference: np.ndarray) -> float:
    """The Wasserstein distance between the two samples, in reference standard deviations."""
    return wasserstein(batch, reference) / spread(reference)


def wasserstein_threshold(n: int, m: int) -> float:
    return WASSERSTEIN_EFFECT + WASSERSTEIN_NOISE * math.sqrt(1 / n + 1 / m)


def numeric_drift(column: str, batch: np.ndarray, reference: np.ndarray) -> ColumnDrift | None:
    """The scaled Wasserstein distance of one numeric column; None when a side has no values."""
    if not len(batch) or not len(reference):
        return None
    value = scaled_wasserstein(batch, reference)
    threshold = wasserstein_threshold(len(batch), len(reference))
    drifted = value > threshold
    chart = _histograms(batch, reference) if drifted else {}
    return ColumnDrift(column, "wasserstein/sd", value, threshold, drifted, chart)


def categorical_drift(
    column: str, batch: Mapping[str, int], reference: Mapping[str, int]
) -> ColumnDrift | None:
    """The PSI of one categorical column; None when a side is empty or the reference holds
    too many distinct values to be a category."""
    n, m = sum(batch.values()), sum(reference.values())
    if not n or not m or len(reference) > MAX_CATEGORIES:
        return None
    categories = sorted(set(batch) | set(reference))
    value = psi(batch, reference)
    threshold = psi_threshold(len(categories), n, m)
    drifted = value > threshold
    chart = {}
    if drifted:
        chart = {
            "labels": categories,
            "reference": [_rounded(reference.get(c, 0) / m) for c in categories],
            "batch": [_rounded(batch.get(c, 0) / n) for c in categories],
        }
    return ColumnDrift(column, "psi", value, threshold, drifted, chart)


def compare(batch: Profile, reference: Profile) -> list[ColumnDrift]:
    """Every column both profiles hold, compared; in column order, numeric ones first."""
    found: list[ColumnDrift | None] = [
        numeric_drift(column, values, reference.numeric[column])
        for column, values in batch.numeric.items()
        if column in reference.numeric
    ]
    found += [
        categorical_drift(column, counts, reference.categorical[column])
        for column, counts in batch.categorical.items()
        if column in reference.categorical
    ]
    return [drift for drift in found if drift is not None]


def drifted_columns(columns: list[dict[str, Any]]) -> list[str]:
    """The names of the drifted columns in a stored drift result, in order."""
    return [str(c["column"]) for c in columns if c.get("drifted")]


def _histograms(batch: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Shares of both samples on shared bins spanning the reference's 1st to 99th percentile."""
    low, high = (float(v) for v in np.quantile(reference, [0.01, 0.99]))
    low, high = min(low, float(np.median(batch))), max(high, float(np.median(batch)))
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, CHART_BINS + 1)

    def shares(values: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(values, low, high), edges)
        return [_rounded(c / len(values)) for c in counts]

    return {
        "edges": [_rounded(e) for e in edges],
        "reference": shares(reference),
        "batch": shares(batch),
    }


def _rounded(value: float) -> float:
    """Six significant digits: enough to read, and stable across platforms' last bits."""
    return float(f"{value:.6g}")
