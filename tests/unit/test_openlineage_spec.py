"""The events the stages write without openlineage-python are the ones the client writes.

Each event is built twice, from the same values: with the client's classes, emitted through the
client (which adds its `tags` facet) and serialized by it; and by mainstem's own builders. The two
JSON lines must be equal, byte for byte.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import attr
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    data_quality_assertions_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Transport

from mainstem.openlineage import facets
from mainstem.openlineage.emitter import client_event
from mainstem.openlineage.facets import DatasetState
from mainstem.openlineage.settings import client_configured
from mainstem.openlineage.spec import dataset, new_run_id, run_event, to_json
from mainstem.validation.contract import load_contract
from tests.conftest import ROOT

RUN = "01936f3c-5d2e-7c3a-9f61-2b3c4d5e6f70"
TASK_RUN = "01936f3c-5d2e-7c3a-9f61-2b3c4d5e6f71"
DAG_RUN = "01936f3c-5d2e-7c3a-9f61-2b3c4d5e6f72"
TIME = "2026-12-03T00:00:07.633098+00:00"
NAMESPACE = "mainstem://ws"
FILES = "file://host"
REPORT = {
    "status": "rejected",
    "reasons": ["batch-002.csv: missing column(s) grade"],
    "failures_by_check": [{"column": "weight_g", "check": "in_range(1.0, 5000.0)", "rows": 2}],
}
TRAINED = {"trained": True, "run_id": "r1", "model_version": 2, "promoted": True}


class Captured(Transport):
    kind = "captured"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, event: Any) -> None:
        self.lines.append(Serde.to_json(event))


@attr.define
class TrainingFacet(RunFacet):
    mlflowRunId: str
    registeredModelName: str
    registeredModelVersion: str
    promoted: bool
    productionVersion: str | None = attr.field(default=None)
    _additional_skip_redact: ClassVar[list[str]] = []

    @staticmethod
    def _get_schema() -> str:
        return facets.TRAINING_SCHEMA_URL


def through_client(event: RunEvent) -> str:
    captured = Captured()
    OpenLineageClient(transport=captured, config={}).emit(event)
    return captured.lines[0]


@pytest.fixture(autouse=True)
def no_client_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ["OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))


def client_run(extra: dict[str, RunFacet]) -> Run:
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=TASK_RUN),
        job=parent_run.Job(namespace=NAMESPACE, name="dag.repro"),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=DAG_RUN),
            job=parent_run.RootJob(namespace=NAMESPACE, name="dag"),
        ),
    )
    engine = processing_engine_run.ProcessingEngineRunFacet(
        version="3.67.1", name="DVC", openlineageAdapterVersion="0.1.0"
    )
    return Run(runId=RUN, facets={"processing_engine": engine, "parent": parent, **extra})


def client_job() -> Job:
    job_type = job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="DVC", jobType="STAGE"
    )
    return Job(namespace=NAMESPACE, name="validate", facets={"jobType": job_type})


def our_run(extra: dict[str, Any]) -> dict[str, Any]:
    run_facets = {
        "processing_engine": facets.processing_engine_facet("3.67.1", "0.1.0"),
        "parent": facets.parent_facet(
            f"{NAMESPACE}/dag.repro/{TASK_RUN}", f"{NAMESPACE}/dag/{DAG_RUN}"
        ),
        **extra,
    }
    return {"runId": RUN, "facets": run_facets}


def our_job() -> dict[str, Any]:
    return {
        "namespace": NAMESPACE,
        "name": "validate",
        "facets": {"jobType": facets.job_type_facet()},
    }


def client_complete() -> RunEvent:
    contract = load_contract(ROOT / "contracts" / "produce" / "v1.yaml")
    ours = facets.quality_assertions(contract, REPORT)["assertions"]
    assertions = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=[data_quality_assertions_dataset.Assertion(**a) for a in ours]
    )
    schema = schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=column,
                type=dtype,
                description=None if contract.nullable.get(column, True) else "required",
                ordinal_position=position,
            )
            for position, (column, dtype) in enumerate(contract.dtypes.items(), start=1)
        ]
    )
    raw = InputDataset(
        FILES,
        "/ws/data/raw/batch.tar",
        facets={"version": dataset_version_dataset.DatasetVersionDatasetFacet("aa11")},
        inputFacets={"dataQualityAssertions": assertions},
    )
    validated = OutputDataset(
        FILES,
        "/ws/data/validated/batch",
        facets={
            "version": dataset_version_dataset.DatasetVersionDatasetFacet("bb22.dir"),
            "schema": schema,
        },
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=18, size=4096, fileCount=3
            )
        },
    )
    training = TrainingFacet(
        mlflowRunId="r1",
        registeredModelName="produce-grade",
        registeredModelVersion="2",
        promoted=True,
    )
    return RunEvent(
        eventTime=TIME,
        eventType=RunState.COMPLETE,
        run=client_run({facets.TRAINING_FACET: training}),
        job=client_job(),
        inputs=[raw],
        outputs=[validated],
    )


def our_complete() -> dict[str, Any]:
    contract = load_contract(ROOT / "contracts" / "produce" / "v1.yaml")
    raw_state = DatasetState("data/raw/batch.tar", "aa11", 100, None)
    validated_state = DatasetState("data/validated/batch", "bb22.dir", 4096, 3)
    raw = dataset(
        FILES,
        "/ws/data/raw/batch.tar",
        {"version": facets.version_facet(raw_state)},
        "inputFacets",
        {"dataQualityAssertions": facets.quality_assertions(contract, REPORT)},
    )
    validated = dataset(
        FILES,
        "/ws/data/validated/batch",
        {"version": facets.version_facet(validated_state), "schema": facets.schema_facet(contract)},
        "outputFacets",
        {"outputStatistics": facets.statistics_facet(validated_state, 18)},
    )
    training = facets.training_facet(TRAINED, "produce-grade")
    assert training is not None
    return run_event(
        "COMPLETE",
        TIME,
        our_run({facets.TRAINING_FACET: training}),
        our_job(),
        inputs=[raw],
        outputs=[validated],
    )


def test_a_complete_event_is_the_clients_byte_for_byte() -> None:
    assert to_json(our_complete()) == through_client(client_complete())


def test_a_fail_event_is_the_clients_byte_for_byte() -> None:
    error = error_message_run.ErrorMessageRunFacet(
        message="boom", programmingLanguage="python", stackTrace="Traceback: boom"
    )
    theirs = RunEvent(
        eventTime=TIME,
        eventType=RunState.FAIL,
        run=client_run({"errorMessage": error}),
        job=client_job(),
    )
    ours = run_event(
        "FAIL",
        TIME,
        our_run({"errorMessage": facets.error_facet("boom", "Traceback: boom")}),
        our_job(),
    )
    assert to_json(ours) == through_client(theirs)


def test_an_event_sent_through_the_client_is_unchanged() -> None:
    assert through_client(client_event(our_complete())) == to_json(our_complete())


def test_tags_configured_for_the_client_reach_the_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENLINEAGE__TAGS__RUN__TEAM", "data")
    assert client_configured()
    tags = json.loads(through_client(client_event(our_complete())))["run"]["facets"]["tags"]
    assert {"key": "team", "value": "data", "source": "USER"} in tags["tags"]


def test_no_setting_of_the_clients_means_no_client() -> None:
    assert not client_configured()


def test_an_openlineage_yml_in_the_workspace_is_a_client_setting(tmp_path: Path) -> None:
    (tmp_path / "openlineage.yml").write_text("transport:\n  type: console\n")
    assert client_configured()


def test_run_ids_are_uuid7_in_time_order() -> None:
    first, second = uuid.UUID(new_run_id()), uuid.UUID(new_run_id())
    assert (first.version, first.variant) == (7, uuid.RFC_4122)
    assert first.int >> 80 <= second.int >> 80
