"""The flat metrics files DVC tracks, and reading them back through DVC.

In: validation reports and the master manifest. Out: flat JSON dicts for `metrics/validate.json`
and `metrics/master.json` (numbers, plus the ids of the last batch), computed from state rather
than accumulated, so a re-run after a crash writes the same figures. `read_metric` reads a value
back through `dvc.api.metrics_show`, which is how the DAGs publish `CURRENT_MASTER_ROWS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainstem.errors import MainstemError
from mainstem.master import Manifest

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


def read_metric(root: Path, file: str, name: str) -> Any:
    """One value from a DVC-tracked metrics file, read through DVC's API."""
    import dvc.api

    try:
        # DVC resolves a relative target against the process's cwd, not the repo: pass it absolute.
        shown = dvc.api.metrics_show(str(root / file), repo=str(root))
    except Exception as exc:  # dvc raises its own exception types for a missing or bad file
        raise MainstemError(f"cannot read {file} through DVC in {root}: {exc}") from exc
    if name not in shown:
        raise MainstemError(f"{file} has no metric '{name}'; has `dvc repro` run?")
    return shown[name]
