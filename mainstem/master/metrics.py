"""The flat master metrics DVC tracks in `metrics/master.json`.

In: the master manifest and the validation reports. Out: one flat JSON dict (row and part counts,
batches merged and rejected, the last batch and the contract), computed from state; and
`master_rows` read back through DVC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainstem.master.parts import Manifest
from mainstem.metrics import read_metric


def master_metrics(manifest: Manifest, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What the master holds and how it got there."""
    merged = [b for b in manifest.batches if b.status == "accepted"]
    return {
        "master_rows": manifest.rows,
        "master_parts": len(manifest.parts),
        "batches_merged": len(merged),
        "batches_rejected": sum(1 for b in manifest.batches if b.status == "rejected"),
        "rows_rejected_total": sum(int(r["rows_rejected"]) for r in reports),
        "last_batch_id": manifest.batches[-1].batch_id if manifest.batches else "",
        "contract": manifest.contract,
    }


def master_rows(root: Path, metrics_file: Path) -> int:
    """`master_rows` as DVC reports it from the tracked metrics file (never from the master)."""
    return int(read_metric(root, metrics_file.relative_to(root).as_posix(), "master_rows"))
