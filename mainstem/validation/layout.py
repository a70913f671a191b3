"""Where the validated store keeps each file, and reading its small JSON files.

In: the validated store's folder and a batch id. Out: paths and the parsed `report.json` or
`_state.json`. Kept apart from `validated_store`, which writes the store and imports the whole
validation stack, so readers (merge, status, the batch flow) start without pandas and pandera.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainstem.durable import read_json_object

STATE = "_state.json"
IMAGES = "images"
REPORT = "report.json"
REPORT_HTML = "report.html"
ACCEPTED = "accepted.parquet"
REJECTED = "rejected.parquet"


def read_state(validated_dir: Path) -> dict[str, Any]:
    return read_json_object(validated_dir / STATE) or {}


def read_report(validated_dir: Path, batch_id: str) -> dict[str, Any] | None:
    """A batch's validation report, or None when the batch has not been validated."""
    return read_json_object(validated_dir / batch_id / REPORT)
