"""The pin of drift's reference: which production model a batch is compared with.

In: the pin file (`validate.drift_reference`). Out: a Pin (the model's name, version and run, and
the DVC hash of the master its training run recorded) or None for `{}`, no production model yet.
Kept apart from the drift code, which needs numpy and pandas, so the batch flow reads and writes
the pin without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem.durable import read_json_object


@dataclass(frozen=True)
class Pin:
    """The production model drift compares against, and the master hash its run recorded."""

    model_name: str
    version: str
    run_id: str
    master_md5: str

    def to_json(self) -> dict[str, str]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "run_id": self.run_id,
            "master_md5": self.master_md5,
        }

    def describe(self) -> str:
        return f"{self.model_name} version {self.version} (master {self.master_md5})"


def parse_pin(value: dict[str, Any] | None) -> Pin | None:
    """The pin a pin file holds; None for `{}` (no production model yet)."""
    if not value or not value.get("master_md5"):
        return None
    return Pin(
        str(value.get("model_name", "")),
        str(value.get("version", "")),
        str(value.get("run_id", "")),
        str(value["master_md5"]),
    )


def read_pin(path: Path) -> Pin | None:
    return parse_pin(read_json_object(path))
