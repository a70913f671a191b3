"""Sending events: the workspace's run files always, and an HTTP endpoint when one is configured.

In: LineageSettings, the environment, and events as JSON dicts (see `spec`). Out: an Emitter whose
`send` hands an event to every destination. With no settings of openlineage-python's own and no
URL, an event is one line appended to its run's file, and the client is never imported. Otherwise
every destination is a client, as the client would have it (its tags, filters and facets
applied). A destination that fails (an endpoint down) is logged and skipped: lineage must never
fail the stage it describes, and the run file still holds the event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mainstem.openlineage.run_files import append_line, run_file
from mainstem.openlineage.settings import (
    LineageSettings,
    client_configured,
    environment_transport,
)
from mainstem.openlineage.spec import TAGS_FACET, to_json

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import RunEvent

log = logging.getLogger(__name__)


class Emitter:
    def __init__(self, settings: LineageSettings) -> None:
        self.events_dir = settings.events_dir
        self.clients = client_destinations(settings) if settings.url or client_configured() else []

    def send(self, event: dict[str, Any]) -> None:
        if not self.clients:
            append_line(run_file(self.events_dir, event["run"]["runId"]), to_json(event))
            return
        for client in self.clients:
            try:
                client.emit(client_event(event))
            except Exception as exc:  # a lineage sink must never fail the stage
                log.warning(
                    "OpenLineage: %s transport failed (%s); the event stays in the run file",
                    client.transport.kind,
                    exc,
                )


def client_destinations(settings: LineageSettings) -> list[OpenLineageClient]:
    """The run file, the configured endpoint and the environment's transport, each a client."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from mainstem.openlineage.transport import RunFileConfig, RunFileTransport

    clients = [
        OpenLineageClient(
            transport=RunFileTransport(RunFileConfig(str(settings.events_dir))), config={}
        )
    ]
    if settings.url:
        http = HttpConfig.from_dict(
            {
                "url": settings.url,
                "endpoint": settings.endpoint,
                "timeout": settings.timeout_seconds,
                "retry": {"total": 2, "backoff_factor": 0.2, "allowed_methods": ["POST"]},
            }
        )
        clients.append(OpenLineageClient(transport=HttpTransport(http), config={}))
    if environment_transport():
        # OPENLINEAGE_URL, OPENLINEAGE_CONFIG, OPENLINEAGE__TRANSPORT__*: the client's own rules
        clients.append(OpenLineageClient())
    return clients


def client_event(event: dict[str, Any]) -> RunEvent:
    """The client's RunEvent for `event`; facets stay dicts, which it serializes as they are.

    The `tags` run facet is left for the client to add, with any tags configured for it.
    """
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
    from openlineage.client.event_v2 import RunState as EventType

    run, job = event["run"], event["job"]
    return RunEvent(
        eventTime=event["eventTime"],
        eventType=EventType(event["eventType"]),
        run=Run(
            runId=run["runId"],
            facets={k: v for k, v in run["facets"].items() if k != TAGS_FACET},
        ),
        job=Job(namespace=job["namespace"], name=job["name"], facets=job["facets"]),
        inputs=[
            InputDataset(
                d["namespace"], d["name"], facets=d["facets"], inputFacets=d["inputFacets"]
            )
            for d in event["inputs"]
        ],
        outputs=[
            OutputDataset(
                d["namespace"], d["name"], facets=d["facets"], outputFacets=d["outputFacets"]
            )
            for d in event["outputs"]
        ],
    )
