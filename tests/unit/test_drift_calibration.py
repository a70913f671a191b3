"""The drift thresholds, calibrated: few false alarms on unchanged data, real changes caught.

Batches of 100 to 100,000 rows are drawn from the reference's own distribution (a false alarm is
any column flagged) and from three changed ones: a numeric column shifted by half a reference
sigma, a new category in 10% of the rows, and images 20% brighter. Seeded, so the rates are the
same on every run. Small batches get 200 trials each; large ones fewer, as their statistics barely
vary from one draw to the next (the noise floor shrinks with the batch).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mainstem.validation.drift import (
    IMAGE_STATS,
    categorical_drift,
    image_stats,
    numeric_drift,
    stats_frame,
)

REFERENCE_ROWS = 2000
POOL = 1500
SHARES = {"north": 0.4, "south": 0.3, "east": 0.2, "west": 0.1}
TRIALS = {100: 200, 1000: 200, 10_000: 40, 100_000: 10}
MEAN, SD = 250.0, 40.0


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _image_pool(rng: np.random.Generator, count: int, brighter: float = 1.0) -> np.ndarray:
    """Statistics of `count` small photos: a random tint plus noise, optionally brightened."""
    tint = rng.uniform(60, 170, size=(count, 1, 1, 3))
    noise = rng.normal(0, 25, size=(count, 8, 8, 3))
    pictures = np.clip(np.clip(tint + noise, 0, 255) * brighter, 0, 255)
    stats = stats_frame(image_stats(_png(p), "PNG 8x8 RGB") for p in pictures)
    return stats[list(IMAGE_STATS)].to_numpy()


@pytest.fixture(scope="module")
def world() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261202)
    return {
        "numeric": rng.normal(MEAN, SD, REFERENCE_ROWS),
        "images": _image_pool(rng, REFERENCE_ROWS),
        "same_images": _image_pool(rng, POOL),
        "bright_images": _image_pool(rng, POOL, brighter=1.2),
    }


def _categories(rng: np.random.Generator, rows: int, new_share: float = 0.0) -> dict[str, int]:
    names = [*SHARES, "new"]
    shares = [share * (1 - new_share) for share in SHARES.values()] + [new_share]
    return dict(zip(names, (int(c) for c in rng.multinomial(rows, shares)), strict=True))


REFERENCE_COUNTS = {name: int(share * REFERENCE_ROWS) for name, share in SHARES.items()}


def _images_drift(rows: np.ndarray, reference: np.ndarray) -> bool:
    found = [numeric_drift(stat, rows[:, i], reference[:, i]) for i, stat in enumerate(IMAGE_STATS)]
    return any(drift is not None and drift.drifted for drift in found)


def _flagged(world: dict[str, np.ndarray], rng: np.random.Generator, rows: int, case: str) -> bool:
    """Whether a batch drawn for `case` is flagged, on the column that case changes."""
    if case == "shift":
        found = numeric_drift("weight", rng.normal(MEAN + 0.5 * SD, SD, rows), world["numeric"])
        return bool(found and found.drifted)
    if case == "new category":
        found = categorical_drift("supplier", _categories(rng, rows, 0.1), REFERENCE_COUNTS)
        return bool(found and found.drifted)
    pool = world["bright_images" if case == "brighter" else "same_images"]
    return _images_drift(pool[rng.integers(0, len(pool), rows)], world["images"])


def _false_alarm(world: dict[str, np.ndarray], rng: np.random.Generator, rows: int) -> bool:
    """Whether an unchanged batch has any column flagged."""
    numeric = numeric_drift("weight", rng.normal(MEAN, SD, rows), world["numeric"])
    categorical = categorical_drift("supplier", _categories(rng, rows), REFERENCE_COUNTS)
    return (
        bool(numeric and numeric.drifted)
        or bool(categorical and categorical.drifted)
        or _flagged(world, rng, rows, "same")
    )


@pytest.mark.parametrize("rows", list(TRIALS))
def test_unchanged_batches_rarely_raise_an_alarm(world: dict[str, np.ndarray], rows: int) -> None:
    rng = np.random.default_rng(rows)
    alarms = sum(_false_alarm(world, rng, rows) for _ in range(TRIALS[rows]))
    assert alarms / TRIALS[rows] <= 0.05


@pytest.mark.parametrize("change", ["shift", "new category", "brighter"])
@pytest.mark.parametrize("rows", list(TRIALS))
def test_each_change_is_detected(world: dict[str, np.ndarray], rows: int, change: str) -> None:
    rng = np.random.default_rng(rows)
    detected = sum(_flagged(world, rng, rows, change) for _ in range(TRIALS[rows]))
    assert detected / TRIALS[rows] >= 0.95
