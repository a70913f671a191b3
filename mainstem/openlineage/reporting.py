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

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    JobFacet,
    RunFacet,
    error_message_run,
    job_type_job,
    processing_engine_run,
)
from openlineage.client.uuid import generate_new_uuid

from mainstem import __version__
from mainstem.durable import read_json_object
from mainstem.openlineage import facets
from mainstem.openlineage.settings import PARENT_ENV, ROOT_PARENT_ENV, LineageSettings
from mainstem.openlineage.transport import read_events, run_file, write_marker

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
    run_id: str = field(default_factory=lambda: str(generate_new_uuid()))
    # a run ended for a crashed one belongs to whoever started it, not to this run's parent
    under_parent: bool = True

    @property
    def job(self) -> Job:
        job_facets: dict[str, JobFacet] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="DVC", jobType="STAGE"
            )
        }
        return Job(namespace=self.settings.namespace, name=self.stage, facets=job_facets)

    def run(self, extra: dict[str, RunFacet] | None = None) -> Run:
        run_facets: dict[str, RunFacet] = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=version("dvc"), name="DVC", openlineageAdapterVersion=__version__
            )
        }
        parent = os.environ.get(PARENT_ENV, "") if self.under_parent else ""
        if parent:
            try:
                run_facets["parent"] = facets.parent_facet(
                    parent, os.environ.get(ROOT_PARENT_ENV) or None
                )
            except ValueError as exc:
                log.warning("OpenLineage: %s ignored: %s", PARENT_ENV, exc)
        return Run(runId=self.run_id, facets={**run_facets, **(extra or {})})

    @property
    def open_marker(self) -> Path:
        return self.settings.events_dir / OPEN_DIR / f"{self.stage}.json"


def event(
    state: RunState, current: StageRun, extra: dict[str, RunFacet] | None = None, **datasets: Any
) -> RunEvent:
    """An event of `current` now, with the run's facets and `extra` ones."""
    return RunEvent(
        eventTime=now(), run=current.run(extra), job=current.job, eventType=state, **datasets
    )


def close_abandoned(current: StageRun, send: Any) -> str | None:
    """ABORT the run of this stage that a crash left without an end; its run id, if any."""
    marker = read_json_object(current.open_marker)
    if not marker:
        return None
    run_id = str(marker["runId"])
    path = run_file(current.settings.events_dir, run_id)
    events = read_events(path) if path.is_file() else []
    types = {e.get("eventType") for e in events}
    if "START" in types and not types & {"COMPLETE", "FAIL", "ABORT"}:
        abandoned = StageRun(current.settings, current.root, current.stage, run_id, False)
        send(event(RunState.ABORT, abandoned))
        log.warning(
            "OpenLineage: run %s of stage %s ended without an end event; ABORT sent",
            run_id,
            current.stage,
        )
    current.open_marker.unlink(missing_ok=True)
    return run_id


def complete_event(current: StageRun) -> RunEvent:
    """COMPLETE with the stage's datasets as DVC will record them, and their facets."""
    from mainstem.openlineage.datasets import build_datasets, stage_contract, stage_facts
    from mainstem.openlineage.dvc_datasets import stage_datasets
    from mainstem.params import load_params

    params = load_params(current.root)
    states = stage_datasets(params.root, current.stage)
    contract = stage_contract(params, current.stage, states)
    facts = stage_facts(params, current.stage, contract)
    inputs, outputs = build_datasets(params, states, facts, contract)
    extra: dict[str, RunFacet] = {}
    if current.stage == "train":
        trained = facets.training_facet(
            read_json_object(params.train.metrics_file) or {}, params.train.model_name
        )
        if trained is not None:
            extra[facets.TRAINING_FACET] = trained
    return event(RunState.COMPLETE, current, extra, inputs=inputs, outputs=outputs)


def fail_event(current: StageRun, error: BaseException) -> RunEvent:
    message = str(error) or type(error).__name__
    trace = "".join(traceback.format_exception(error))
    facet = error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", stackTrace=trace
    )
    return event(RunState.FAIL, current, {"errorMessage": facet})


def run_reported(
    stage: str, root: Path, settings: LineageSettings, run_stage: Callable[..., int]
) -> int:
    """Run `stage` (by `run_stage(stage, errors)`) between its START and its COMPLETE or FAIL."""
    from mainstem.openlineage.emitter import Emitter

    emitter = Emitter(settings)
    current = StageRun(settings, root, stage)
    close_abandoned(current, emitter.send)
    write_marker(current.open_marker, {"runId": current.run_id, "job": stage})
    emitter.send(event(RunState.START, current))
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
        ended = event(RunState.COMPLETE, current)
    emitter.send(ended)
    current.open_marker.unlink(missing_ok=True)
    return status
