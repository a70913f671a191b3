"""An openlineage-python transport that keeps each run's events in a file of its own.

In: events. Out: `<directory>/<runId>.jsonl`, one JSON line per event, appended and fsynced. The
client's own file transport names its files by the wall clock; naming them by run id keeps a run's
START and its end together, lets a later run find a START a crash left open, and puts no clock in
a file name. The Airflow provider uses it too, as the transport type
`mainstem.openlineage.transport.RunFileTransport`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Config, Transport

if TYPE_CHECKING:
    from openlineage.client.client import Event

TERMINAL = frozenset({"COMPLETE", "FAIL", "ABORT"})


@dataclass
class RunFileConfig(Config):
    directory: str

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> RunFileConfig:
        if "directory" not in params:
            raise RuntimeError("`directory` key not passed to RunFileConfig")
        return cls(directory=str(params["directory"]))


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


class RunFileTransport(Transport):
    kind = "mainstem_run_file"
    config_class = RunFileConfig

    def __init__(self, config: RunFileConfig) -> None:
        self.config = config

    def emit(self, event: Event) -> None:
        run = getattr(event, "run", None)
        name = run.runId if run is not None else "no-run"
        append_line(run_file(Path(self.config.directory), name), Serde.to_json(event))
