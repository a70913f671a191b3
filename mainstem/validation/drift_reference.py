"""Drift's reference: the master the production model was trained on, read from the DVC cache.

In: the pin file (`validate.drift_reference`), which names the production model (name, version,
run) and the DVC hash of the master its training run recorded (`master_md5`), or is `{}` while
there is no production model; the workspace's DVC cache; readers of canonical images and of the
statistics the batch reports recorded for them; the contract. Out: a Reference: the pin, whether
the reference could be read (and why not), and its drift Profile.

The pin is written outside the stage, before `dvc repro` (flow/drift_pinning.py), and the validate
stage depends on it, so the reference is an input DVC sees: a new production model re-runs the
stage, and the same raw batches, contract and pin give the same drift. The master at that hash is
read from the cache objects directly (`.dir` listing, then each part), as the workspace's master
has usually moved on since.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mainstem.validation.drift import (
    IMAGE_STATS,
    ColumnKinds,
    Profile,
    image_stats,
    profile,
    stats_frame,
)
from mainstem.validation.drift_pin import Pin

MAX_IMAGES = 2000  # images summarised per side; evenly spread over the rows, so deterministic
CACHE_DIR = Path(".dvc") / "cache" / "files" / "md5"


def cache_object(root: Path, md5: str) -> Path:
    return root / CACHE_DIR / md5[:2] / md5[2:]


def read_master_at(root: Path, md5: str) -> pd.DataFrame | None:
    """The master folder DVC hashed as `md5` (a `.dir` hash), from the cache; None if absent."""
    listing = cache_object(root, md5)
    if not listing.is_file():
        return None
    entries = json.loads(listing.read_text(encoding="utf-8"))
    parts = sorted(
        (str(e["relpath"]), cache_object(root, str(e["md5"])))
        for e in entries
        if str(e["relpath"]).endswith(".parquet")
    )
    if any(not path.is_file() for _, path in parts):
        return None
    frames = [pd.read_parquet(path) for _, path in parts]
    return pd.concat(frames, ignore_index=True) if frames else None


def spread_rows(count: int, limit: int = MAX_IMAGES) -> np.ndarray:
    """At most `limit` row positions, evenly spread over `count` rows."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def image_profiles(
    frame: pd.DataFrame,
    kinds: ColumnKinds,
    read_image: Callable[[str], bytes | None],
    known: Mapping[str, dict[str, float]],
) -> dict[str, pd.DataFrame]:
    """Per image column, the statistics of the images of up to MAX_IMAGES rows: as the batch
    reports recorded them (`known`, by canonical name), else decoded from the image store."""
    found: dict[str, pd.DataFrame] = {}
    for column in kinds.images:
        names = frame[column].dropna().astype(str).tolist()
        stats = []
        for name in (names[i] for i in spread_rows(len(names))):
            if name in known:
                stats.append(known[name])
            elif (data := read_image(name)) is not None:
                stats.append(image_stats(data, None))
        found[column] = stats_frame(stats)
    return found


def recorded_stats(reports: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Canonical image name -> its statistics, as the batch reports recorded them."""
    return {
        str(image["canonical"]): dict(zip(IMAGE_STATS, image["stats"], strict=True))
        for report in reports
        for image in report.get("images", [])
        if image.get("canonical") and image.get("stats")
    }


@dataclass
class Reference:
    """The pinned reference, read on first use: its status, and its profile when readable."""

    pin: Pin | None
    root: Path
    kinds: ColumnKinds
    read_image: Callable[[str], bytes | None]
    known: Mapping[str, dict[str, float]]

    @cached_property
    def profile(self) -> Profile | None:
        if self.pin is None:
            return None
        master = read_master_at(self.root, self.pin.master_md5)
        if master is None:
            return None
        images = image_profiles(master, self.kinds, self.read_image, self.known)
        return profile(master, self.kinds, images)

    def unavailable(self) -> str | None:
        """Why there is nothing to compare against, or None when the reference is readable."""
        if self.pin is None:
            return "no production model yet, so no reference to compare against"
        if self.profile is None:
            return (
                f"the master {self.pin.describe()} was trained on is not in the DVC cache; "
                "run `dvc fetch` for the commit that trained it"
            )
        return None
