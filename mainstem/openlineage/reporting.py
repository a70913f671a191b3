"""One stage run between its START and its COMPLETE or FAIL; ABORT for a run a crash left open.

In: the stage's name, the workspace and its LineageSettings, and, under Airflow, the task's run in
`OPENLINEAGE_PARENT_ID` / `OPENLINEAGE_ROOT_PARENT_ID`. Out: the stage's own exit status,
unchanged, and its events: START; then COMPLETE, with the datasets DVC hashes and their facets, or
FAIL with the error. A run that a crash cut short is closed with ABORT by the stage's next run, so
no START stays open: a marker names the run in progress until its end event is written.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mainstem import __version__
from mainstem.durable import read_json_object
from mainstem.openlineage import facets
from mainstem.openlineage.facets import Facet
from mainstem.openlineage.run_files import TERMINAL, read_events, run_file, write_marker
from mainstem.openlineage.settings import PARENT_ENV, ROOT_PARENT_ENV, LineageSettings
from mainstem.openlineage.spec import new_run_id, run_event

log = logging.getLogger(__name__)
OPEN_DIR = "open"


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class StageRun:
    """One execution of a stage: its job, its run id and the facets every event of it carries."""

    settings: LineageSettings
    root: Path
    stage: str
    run_id: str = field(default_factory=new_run_id)
    # a run ended for a crashed one belongs to whoever started it, not to this run's parent
    under_parent: bool = True

    @property
    def job(self) -> dict[str, Any]:
        return {
            "namespace": self.settings.namespace,
            "name": self.stage,
            "facets": {"jobType": facets.job_type_facet()},
        }

    def run(self, extra: dict[str, Facet] | None = None) -> dict[str, Any]:
        run_facets = {
            "processing_engine": facets.processing_engine_facet(version("dvc"), __version__)
        }
        parent = os.environ.get(PARENT_ENV, "") if self.under_parent else ""
        if parent:
            try:
                run_facets["parent"] = facets.parent_facet(
                    parent, os.environ.get(ROOT_PARENT_ENV) or None
                )
            except ValueError as exc:
                log.warning("OpenLineage: %s ignored: %s", PARENT_ENV, exc)
        return {"runId": self.run_id, "facets": {**run_facets, **(extra or {})}}

    @property
    def open_marker(self) -> Path:
        return self.settings.events_dir / OPEN_DIR / f"{self.stage}.json"


def event(
    state: str, current: StageRun, extra: dict[str, Facet] | None = None, **datasets: Any
) -> dict[str, Any]:
    """An event (`state`: START, COMPLETE, FAIL or ABORT) of `current` now, with the run's facets
    and `extra` ones."""
    return run_event(state, now(), current.run(extra), current.job, **datasets)


def close_abandoned(current: StageRun, send: Any) -> str | None:
    """ABORT the run of this stage that a crash left without an end; its run id, if any."""
    marker = read_json_object(current.open_marker)
    if not marker:
        return None
    run_id = str(marker["runId"])
    path = run_file(current.settings.events_dir, run_id)
    events = read_events(path) if path.is_file() else []
    types = {e.get("eventType") for e in events}
    if "START" in types and not types & TERMINAL:
        abandoned = StageRun(current.settings, current.root, current.stage, run_id, False)
        send(event("ABORT", abandoned))
        log.warning(
            "OpenLineage: run %s of stage %s ended without an end event; ABORT sent",
            run_id,
            current.stage,
        )
    current.open_marker.unlink(missing_ok=True)
    return run_id


def complete_event(current: StageRun) -> dict[str, Any]:
    """COMPLETE with the stage's datasets as DVC will record them, and their facets."""
    from mainstem.openlineage.datasets import build_datasets, stage_contract, stage_facts
    from mainstem.openlineage.dvc_datasets import stage_datasets
    from mainstem.params import load_params

    params = load_params(current.root)
    states = stage_datasets(params.root, current.stage)
    contract = stage_contract(params, current.stage, states)
    facts = stage_facts(params, current.stage, contract)
    inputs, outputs = build_datasets(params, states, facts, contract)
    extra: dict[str, Facet] = {}
    if current.stage == "train":
        trained = facets.training_facet(
            read_json_object(params.train.metrics_file) or {}, params.train.model_name
        )
        if trained is not None:
            extra[facets.TRAINING_FACET] = trained
    return event("COMPLETE", current, extra, inputs=inputs, outputs=outputs)


def fail_event(current: StageRun, error: BaseException) -> dict[str, Any]:
    message = str(error) or type(error).__name__
    trace = "".join(traceback.format_exception(error))
    return event("FAIL", current, {"errorMessage": facets.error_facet(message, trace)})


def run_reported(
    stage: str, root: Path, settings: LineageSettings, run_stage: Callable[..., int]
) -> int:
    """Run `stage` (by `run_stage(stage, errors)`) between its START and its COMPLETE or FAIL."""
    from mainstem.openlineage.emitter import Emitter

    emitter = Emitter(settings)
    current = StageRun(settings, root, stage)
    close_abandoned(current, emitter.send)
    write_marker(current.open_marker, {"runId": current.run_id, "job": stage})
    emitter.send(event("START", current))
    errors: list[BaseException] = []
    try:
        status = run_stage(stage, errors)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            emitter.send(fail_event(current, errors[0] if errors else exit_))
            current.open_marker.unlink(missing_ok=True)
        raise
    except BaseException as error:
        emitter.send(fail_event(current, error))
        current.open_marker.unlink(missing_ok=True)
        raise
    try:
        ended = complete_event(current)
    except Exception as exc:  # the stage succeeded: describe it less, never fail it
        log.warning("OpenLineage: could not describe the datasets of %s (%s)", stage, exc)
        ended = event("COMPLETE", current)
    emitter.send(ended)
    current.open_marker.unlink(missing_ok=True)
    return status
