"""Reading the flat metrics files DVC tracks, back through DVC.

In: a workspace, a metrics file and a metric name. Out: the value, read through
`dvc.api.metrics_show`, which is how the DAGs publish `CURRENT_MASTER_ROWS` and training reads
the master's row count: never by re-reading the master.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainstem.errors import MainstemError


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
