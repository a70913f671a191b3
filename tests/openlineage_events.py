"""Reading and checking OpenLineage events in tests: the spec's JSON schemas, runs by run id.

Every event is validated against the OpenLineage event schema, and each facet against its own
facet schema when the spec (or mainstem, for its own facet) defines one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from tests.conftest import ROOT

SCHEMAS = [
    *sorted((ROOT / "tests" / "data" / "openlineage").glob("*.json")),
    ROOT / "docs" / "openlineage" / "MainstemTrainingRunFacet.json",
]
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}


def _documents() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in SCHEMAS}


DOCUMENTS = _documents()
REGISTRY: Registry = Registry().with_resources(
    (doc["$id"], Resource.from_contents(doc)) for doc in DOCUMENTS.values()
)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FormatChecker())


EVENT = _validator({"$ref": DOCUMENTS["OpenLineage"]["$id"]})


def _facets(event: dict[str, Any]) -> list[dict[str, Any]]:
    found = list((event.get("run") or {}).get("facets", {}).values())
    found += list((event.get("job") or {}).get("facets", {}).values())
    for dataset in [*(event.get("inputs") or []), *(event.get("outputs") or [])]:
        found += list((dataset.get("facets") or {}).values())
        found += list((dataset.get("inputFacets") or {}).values())
        found += list((dataset.get("outputFacets") or {}).values())
    return found


def schema_errors(event: dict[str, Any]) -> list[str]:
    """Every way `event` breaks the spec: as an event, and facet by facet."""
    errors = [f"event: {e.message}" for e in EVENT.iter_errors(event)]
    for facet in _facets(event):
        name = facet["_schemaURL"].rsplit("#/$defs/", 1)[-1]
        document = DOCUMENTS.get(name)
        if document is None:
            continue  # a facet of another producer (the Airflow provider's own)
        validator = _validator({"$ref": f"{document['$id']}#/$defs/{name}"})
        errors += [f"{name}: {e.message}" for e in validator.iter_errors(facet)]
    return errors


def read_run_files(directory: Path) -> list[dict[str, Any]]:
    """Every event in the run files of `directory` (not its sub-folders), in file order."""
    events = []
    for path in sorted(directory.glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line]
    return events


def runs(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Event types per run id, in order."""
    found: dict[str, list[str]] = defaultdict(list)
    for event in events:
        found[event["run"]["runId"]].append(event["eventType"])
    return dict(found)


def badly_ended(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Runs without exactly one START and one COMPLETE, FAIL or ABORT after it."""
    return {
        run_id: types
        for run_id, types in runs(events).items()
        if types.count("START") != 1
        or sum(t in TERMINAL for t in types) != 1
        or types[0] != "START"
        or types[-1] not in TERMINAL
    }
