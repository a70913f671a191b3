"""Each stage run's events in a file of its own: `<events_dir>/<runId>.jsonl`.

In: a run id and the JSON lines of its events. Out: the run's file, each line appended with one
write and fsynced, and the marker of the run in progress. Naming files by run id keeps a run's
START and its end together, lets a later run find a START a crash left open, and puts no clock in
a file name. No openlineage-python here: the stages write their files without importing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TERMINAL = frozenset({"COMPLETE", "FAIL", "ABORT"})


def run_file(directory: Path, run_id: str) -> Path:
    return directory / f"{run_id}.jsonl"


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write, then make it durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_marker(path: Path, value: dict[str, Any]) -> None:
    """Replace the small JSON file at `path` atomically and durably.

    Not `durable.write_json`: that is a crash test's write point, and this bookkeeping of the
    events is no part of the pipeline's state.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of one run file; a line a crash cut short is left out."""
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
