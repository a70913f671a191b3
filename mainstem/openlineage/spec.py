"""OpenLineage events as plain JSON, as openlineage-python writes them, without importing it.

In: the parts of an event (its run, job, datasets and facets as dicts). Out: the event dict and
its JSON line. A stage process would spend 0.4-0.5 CPU-s importing the client (any of its modules
imports all of it, transports included) only to write a line to a file, so the stages build their
events here and import the client only when a transport of its own is configured (see `emitter`).
The producer, the schema URLs and the `tags` run facet are the ones the installed client writes:
tests/unit/test_openlineage_spec.py serializes the same events both ways and compares them.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from functools import cache
from importlib.metadata import version
from typing import Any

CLIENT_DISTRIBUTION = "openlineage-python"
SPEC = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
TAGS_FACET = "tags"


@cache
def client_version() -> str:
    return version(CLIENT_DISTRIBUTION)


def producer() -> str:
    """The producer the client stamps on every event and facet it builds."""
    return f"https://github.com/OpenLineage/OpenLineage/tree/{client_version()}/client/python"


def spec_facet(schema: str, **fields: Any) -> dict[str, Any]:
    """A facet of the spec: `schema` is its file and definition under `facets/`, e.g.
    `1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet`."""
    return custom_facet(f"{SPEC}/facets/{schema}", **fields)


def custom_facet(schema_url: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": producer(), "_schemaURL": schema_url, **fields}


def tags_facet() -> dict[str, Any]:
    """The run facet the client adds to every run event when no tags are configured."""
    tag = {"key": "openlineage_client_version", "value": client_version()}
    return spec_facet(
        "1-0-0/TagsRunFacet.json#/$defs/TagsRunFacet",
        tags=[{**tag, "source": "OPENLINEAGE_CLIENT"}],
    )


def checked_run_id(value: str) -> str:
    """`value` if it is a UUID, as the spec requires of a run id; ValueError otherwise."""
    uuid.UUID(value)
    return value


def new_run_id() -> str:
    """A UUIDv7 (RFC 9562): the client's kind of run id, ordered by the time it was made."""
    millis = time.time_ns() // 1_000_000
    rand_a, rand_b = secrets.randbits(12), secrets.randbits(62)
    value = (millis & (1 << 48) - 1) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def run_event(
    event_type: str,
    event_time: str,
    run: dict[str, Any],
    job: dict[str, Any],
    **datasets: list[dict[str, Any]],
) -> dict[str, Any]:
    """A RunEvent as the client emits it, with its `inputs` and `outputs` datasets; its run
    carries the client's `tags` facet."""
    run_facets = {**run.get("facets", {}), TAGS_FACET: tags_facet()}
    return {
        "eventTime": event_time,
        "producer": producer(),
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {**run, "facets": run_facets},
        "job": job,
        "eventType": event_type,
        "inputs": datasets.get("inputs", []),
        "outputs": datasets.get("outputs", []),
    }


def dataset(
    namespace: str, name: str, facets: dict[str, Any], extra_name: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """An input (`extra_name` = `inputFacets`) or output (`outputFacets`) dataset."""
    return {"namespace": namespace, "name": name, "facets": facets, extra_name: extra}


def without_nulls(value: Any) -> Any:
    """What the client leaves of a value: no None in a mapping, no None or `{}` in a list."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        kept = [without_nulls(v) for v in value if v is not None]
        return [v for v in kept if v != {}]
    return value


def to_json(event: dict[str, Any]) -> str:
    """The event's JSON line, byte for byte as the client's serializer writes it."""
    return json.dumps(without_nulls(event), sort_keys=True)
