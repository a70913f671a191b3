"""The flat validation metrics DVC tracks in `metrics/validate.json`.

In: the reports of every validated batch. Out: one flat JSON dict of totals and the figures of the
latest batch, computed from state rather than accumulated, so a re-run after a crash writes the
same figures.
"""

from __future__ import annotations

from typing import Any

_FIGURES = ("rows_in", "rows_accepted", "rows_rejected", "images_accepted", "images_rejected")


def validation_metrics(contract: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over every validated batch, plus the figures of the latest batch."""
    metrics: dict[str, Any] = {
        "contract": contract,
        "batches_validated": len(reports),
        "batches_rejected": sum(1 for r in reports if r["status"] == "rejected"),
    }
    for figure in _FIGURES:
        metrics[f"{figure}_total"] = sum(int(r[figure]) for r in reports)
    last = reports[-1] if reports else None
    metrics["last_batch_id"] = last["batch_id"] if last else ""
    metrics["last_batch_status"] = last["status"] if last else ""
    for figure in _FIGURES:
        metrics[f"last_{figure}"] = int(last[figure]) if last else 0
    return metrics
