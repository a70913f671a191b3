"""What the pipeline page has already read from the lineage, kept so the next build reads only the
commits made since.

In: the points of every batch and training commit up to a commit, and the validated store's state
(contract and fingerprint) they were read under. Out: a small JSON file beside the page
(`reports/.pipeline-history.json`, git-ignored like the page), and the same points read back when
the lineage still contains that commit and the store's state is unchanged; else nothing, and the
page reads the whole lineage again. A commit's message and metrics never change, but the reasons
of a refused batch come from its report, which a new contract rewrites: hence the state. The file
is a cache: unreadable, stale or missing, it only costs the full read it saves.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mainstem.commands import git
from mainstem.flow.pipeline_page import BatchPoint, TrainingPoint

FORMAT = 1
CACHE = Path("reports") / ".pipeline-history.json"


@dataclass(frozen=True)
class LineageSummary:
    head: str  # the last commit read
    state: dict[str, Any]  # the validated store's state the reports were read under
    batches: tuple[BatchPoint, ...]
    trainings: tuple[TrainingPoint, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "head": self.head,
            "state": self.state,
            "batches": [asdict(b) for b in self.batches],
            "trainings": [asdict(t) for t in self.trainings],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LineageSummary:
        if raw.get("format") != FORMAT:
            raise ValueError("another format")
        batches = tuple(
            BatchPoint(**{**b, "reasons": tuple((str(r), int(n)) for r, n in b["reasons"])})
            for b in raw["batches"]
        )
        trainings = tuple(TrainingPoint(**t) for t in raw["trainings"])
        return cls(str(raw["head"]), dict(raw["state"]), batches, trainings)


def read_summary(root: Path, state: dict[str, Any]) -> LineageSummary | None:
    """The saved summary when it still holds for the lineage at HEAD and the store's `state`."""
    try:
        raw = json.loads((root / CACHE).read_text(encoding="utf-8"))
        summary = LineageSummary.from_json(raw)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if summary.state != state:
        return None
    ancestor = git(["merge-base", "--is-ancestor", summary.head, "HEAD"], root, check=False)
    return summary if ancestor.returncode == 0 else None


def save_summary(root: Path, summary: LineageSummary) -> None:
    """Replace the saved summary atomically (not durably: a lost one is read again in full)."""
    path = root / CACHE
    path.parent.mkdir(exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        scratch.write_text(json.dumps(summary.to_json(), sort_keys=True), encoding="utf-8")
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
