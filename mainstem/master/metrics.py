"""The flat master metrics DVC tracks in `metrics/master.json`.

In: the master manifest and the validation reports. Out: one flat JSON dict (row and part counts,
batches merged and rejected, the last batch and the contract), computed from state.
"""

from __future__ import annotations

from typing import Any

from mainstem.master.parts import Manifest


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
