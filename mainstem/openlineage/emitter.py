"""Sending events: the workspace's run files always, and an HTTP endpoint when one is configured.

In: LineageSettings and the environment. Out: an Emitter whose `send` hands an event to every
destination. A destination that fails (an endpoint down) is logged and skipped: lineage must never
fail the stage it describes, and the run file still holds the event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from openlineage.client import OpenLineageClient
from openlineage.client.transport.http import HttpConfig, HttpTransport

from mainstem.openlineage.settings import LineageSettings, environment_transport
from mainstem.openlineage.transport import RunFileConfig, RunFileTransport

if TYPE_CHECKING:
    from openlineage.client.client import Event

log = logging.getLogger(__name__)


class Emitter:
    def __init__(self, settings: LineageSettings) -> None:
        self.clients = [
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
            self.clients.append(OpenLineageClient(transport=HttpTransport(http), config={}))
        if environment_transport():
            # OPENLINEAGE_URL, OPENLINEAGE_CONFIG, OPENLINEAGE__TRANSPORT__*: the client's own rules
            self.clients.append(OpenLineageClient())

    def send(self, event: Event) -> None:
        for client in self.clients:
            try:
                client.emit(event)
            except Exception as exc:  # a lineage sink must never fail the stage
                log.warning(
                    "OpenLineage: %s transport failed (%s); the event stays in the run file",
                    client.transport.kind,
                    exc,
                )
