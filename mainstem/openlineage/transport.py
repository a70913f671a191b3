"""An openlineage-python transport that keeps each run's events in a file of its own.

In: events. Out: `<directory>/<runId>.jsonl` (see `run_files`), one JSON line per event. The
client's own file transport names its files by the wall clock. The Airflow provider uses this one,
as the transport type `mainstem.openlineage.transport.RunFileTransport`, and so do the stages when
a transport of the client's is configured too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Config, Transport

from mainstem.openlineage.run_files import append_line, run_file

if TYPE_CHECKING:
    from openlineage.client.client import Event


@dataclass
class RunFileConfig(Config):
    directory: str

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> RunFileConfig:
        if "directory" not in params:
            raise RuntimeError("`directory` key not passed to RunFileConfig")
        return cls(directory=str(params["directory"]))


class RunFileTransport(Transport):
    kind = "mainstem_run_file"
    config_class = RunFileConfig

    def __init__(self, config: RunFileConfig) -> None:
        self.config = config

    def emit(self, event: Event) -> None:
        run = getattr(event, "run", None)
        name = run.runId if run is not None else "no-run"
        append_line(run_file(Path(self.config.directory), name), Serde.to_json(event))
