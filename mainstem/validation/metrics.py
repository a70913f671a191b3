"""The flat validation metrics DVC tracks in `metrics/validate.json`.

In: the running totals the newest batch's index record holds and that batch's report. Out: one
JSON dict of totals and the figures of the latest batch, read from state rather than added up
in the run, so a re-run after a crash writes the same figures; under `drift`, the latest batch's
drift: its status, the reference it was compared with, the drifted columns, and per compared
column the statistic, value, threshold and verdict.
"""

from __future__ import annotations

from typing import Any

_FIGURES = ("rows_in", "rows_accepted", "rows_rejected", "images_accepted", "images_rejected")


def validation_metrics(
    contract: str, totals: dict[str, int], last: dict[str, Any] | None
) -> dict[str, Any]:
    """Totals over every validated batch (as the newest record counts them), plus the figures of
    the latest batch."""
    metrics: dict[str, Any] = {
        "contract": contract,
        "batches_validated": int(totals.get("batches_validated", 0)),
        "batches_rejected": int(totals.get("batches_rejected", 0)),
    }
    for figure in _FIGURES:
        metrics[f"{figure}_total"] = int(totals.get(f"{figure}_total", 0))
    metrics["last_batch_id"] = last["batch_id"] if last else ""
    metrics["last_batch_status"] = last["status"] if last else ""
    for figure in _FIGURES:
        metrics[f"last_{figure}"] = int(last[figure]) if last else 0
    metrics["drift"] = drift_metrics(last.get("drift") if last else None)
    return metrics


def drift_metrics(drift: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics view of one batch's drift (see validation/drift_store.measure)."""
    if not drift:
        return {"status": "not_measured", "drifted_columns": "", "reference_md5": "", "columns": {}}
    reference = drift.get("reference") or {}
    return {
        "status": drift["status"],
        "message": drift.get("message") or "",
        "reference_md5": reference.get("master_md5", ""),
        "reference_version": reference.get("version", ""),
        "drifted_columns": ", ".join(drift.get("drifted", [])),
        "columns": {
            str(c["column"]): {
                "statistic": c["statistic"],
                "value": c["value"],
                "threshold": c["threshold"],
                "drifted": c["drifted"],
            }
            for c in drift.get("columns", [])
        },
    }
