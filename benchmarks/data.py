"""Deterministic benchmark data: a 12-column inspection table, its master, and batches.

In: keys and a seed. Out: Arrow tables whose every value follows from (keys, seed), so two runs on
any machine build the same bytes. A batch holds `rows` keys of which a fraction overlap keys the
master already has, either among its most recent keys (the common case: late corrections) or
spread uniformly over the whole key range (the worst case for key-range parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

KEY = "item_id"
SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.int64(), nullable=False),
        pa.field("supplier", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=False),
        pa.field("weight_g", pa.float64(), nullable=False),
        pa.field("diameter_mm", pa.float64(), nullable=True),
        pa.field("sugar_brix", pa.float64(), nullable=False),
        pa.field("firmness_n", pa.float64(), nullable=False),
        pa.field("lot", pa.int64(), nullable=False),
        pa.field("pieces", pa.int64(), nullable=False),
        pa.field("harvested_on", pa.timestamp("ns"), nullable=False),
        pa.field("inspected_at", pa.timestamp("ns"), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
    ]
)
_SUPPLIERS = np.array(["north", "south", "east", "west"], dtype=object)
_SITES = np.array([f"site-{i:02d}" for i in range(48)], dtype=object)
_EPOCH_NS = np.datetime64("2021-01-01T00:00:00", "ns").astype(np.int64)
_DAY_NS = 86_400 * 10**9

Spread = Literal["recent", "uniform"]


def rows(keys: np.ndarray, seed: int) -> pa.Table:
    """One row per key, with values drawn from `seed`: the same arguments give the same table."""
    rng = np.random.default_rng(seed)
    n = len(keys)
    weight = np.round(rng.uniform(80.0, 900.0, n), 1)
    diameter = np.round(rng.uniform(40.0, 120.0, n), 1)
    harvested = _EPOCH_NS + rng.integers(0, 1500, n) * _DAY_NS
    columns = {
        KEY: pa.array(keys, pa.int64()),
        "supplier": pa.array(_SUPPLIERS[rng.integers(0, len(_SUPPLIERS), n)], pa.string()),
        "site": pa.array(_SITES[rng.integers(0, len(_SITES), n)], pa.string()),
        "weight_g": pa.array(weight),
        "diameter_mm": pa.array(diameter, mask=rng.random(n) < 0.02),
        "sugar_brix": pa.array(np.round(rng.normal(12.0, 2.0, n), 2)),
        "firmness_n": pa.array(rng.gamma(4.0, 5.0, n)),
        "lot": pa.array(rng.integers(0, 5000, n)),
        "pieces": pa.array(rng.integers(1, 40, n)),
        "harvested_on": pa.array(harvested, pa.timestamp("ns")),
        "inspected_at": pa.array(harvested + rng.integers(0, 14 * _DAY_NS, n), pa.timestamp("ns")),
        "passed": pa.array(rng.random(n) < 0.9),
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


@dataclass(frozen=True)
class BatchSpec:
    """A batch of `rows` keys against a master holding keys [0, master_rows)."""

    seed: int
    master_rows: int
    rows: int
    overlap: float = 0.1
    spread: Spread = "recent"
    recent_window: int = 100_000

    def keys(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1])
        updates = min(round(self.rows * self.overlap), self.master_rows)
        fresh = np.arange(self.master_rows, self.master_rows + self.rows - updates, dtype=np.int64)
        low = max(0, self.master_rows - self.recent_window) if self.spread == "recent" else 0
        old = low + rng.choice(self.master_rows - low, updates, replace=False).astype(np.int64)
        return np.concatenate([np.sort(old), fresh])

    def table(self) -> pa.Table:
        return rows(self.keys(), self.seed)

    @property
    def new_rows(self) -> int:
        return self.rows - min(round(self.rows * self.overlap), self.master_rows)
