"""OpenLineage facets made from what mainstem knows: pure functions of values, no I/O.

In: the active contract, a validation report, DVC's hash and size of a dataset, a stage's metrics,
the parent run's id. Out: facets as the JSON dicts openlineage-python would write (see `spec`),
ready to put on an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mainstem.openlineage.spec import checked_run_id, custom_facet, spec_facet

if TYPE_CHECKING:
    from mainstem.validation.contract import Contract

Facet = dict[str, Any]
TRAINING_FACET = "mainstem_training"
TRAINING_SCHEMA_URL = (
    "https://mainstem.invalid/spec/facets/1-0-0/MainstemTrainingRunFacet.json"
    "#/$defs/MainstemTrainingRunFacet"
)
SCHEMA = "1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
VERSION = "1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
STATISTICS = (
    "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
)
QUALITY = "1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet"
PARENT = "1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"
JOB_TYPE = "2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
PROCESSING_ENGINE = "1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
ERROR_MESSAGE = "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"


@dataclass(frozen=True)
class DatasetState:
    """A dataset as DVC records it in dvc.lock: its hash, and its bytes and files."""

    path: str
    md5: str
    size: int | None
    nfiles: int | None


def schema_facet(contract: Contract) -> Facet:
    """The contract's columns, in order, with their declared types."""
    return spec_facet(
        SCHEMA,
        fields=[
            {
                "name": column,
                "type": dtype,
                "description": None if contract.nullable.get(column, True) else "required",
                "ordinal_position": position,
                "fields": [],
            }
            for position, (column, dtype) in enumerate(contract.dtypes.items(), start=1)
        ],
    )


def version_facet(state: DatasetState) -> Facet:
    return spec_facet(VERSION, datasetVersion=state.md5)


def statistics_facet(state: DatasetState, rows: int | None) -> Facet:
    files = state.nfiles if state.nfiles is not None else (1 if state.size is not None else None)
    return spec_facet(STATISTICS, rowCount=rows, size=state.size, fileCount=files)


def job_type_facet() -> Facet:
    return spec_facet(JOB_TYPE, processingType="BATCH", integration="DVC", jobType="STAGE")


def processing_engine_facet(dvc_version: str, adapter_version: str) -> Facet:
    return spec_facet(
        PROCESSING_ENGINE,
        version=dvc_version,
        name="DVC",
        openlineageAdapterVersion=adapter_version,
    )


def error_facet(message: str, stack_trace: str) -> Facet:
    return spec_facet(
        ERROR_MESSAGE, message=message, programmingLanguage="python", stackTrace=stack_trace
    )


def declared_checks(contract: Contract) -> list[tuple[str, str]]:
    """Every (column, check) the contract asks of a row, named as failures name them."""
    checks: list[tuple[str, str]] = []
    for column, dtype in contract.dtypes.items():
        checks.append((column, f"type {dtype}"))
        if not contract.nullable.get(column, True):
            checks.append((column, "not_nullable"))
        pandera_checks = contract.schema.columns[column].checks
        checks.extend((column, str(check.error)) for check in pandera_checks)
        if column == contract.primary_key and contract.duplicate_keys_in_batch == "reject":
            checks.append((column, "unique in batch"))
    for rule in contract.images:
        checks.extend([(rule.column, "link"), (rule.column, "image")])
    return checks


def quality_assertions(contract: Contract, report: dict[str, Any]) -> Facet:
    """One assertion per check of the contract, failed when a row of the batch failed it.

    Failures of checks the contract does not list (a malformed row of a table) are assertions too,
    and so is the batch as a whole: a structural problem rejects it even when every row check held.
    """
    failed = {
        (str(f["column"]), str(f["check"])): int(f["rows"]) for f in report["failures_by_check"]
    }
    declared = declared_checks(contract)
    extra = sorted(set(failed) - set(declared))

    def assertion(column: str, check: str) -> dict[str, Any]:
        rows = failed.get((column, check), 0)
        return {
            "assertion": check,
            "success": rows == 0,
            "column": column or None,
            "expected": "0",
            "actual": str(rows),
            "params": {},
        }

    batch = {
        "assertion": "batch accepted",
        "success": report["status"] == "accepted",
        "column": None,
        "actual": "; ".join(str(r) for r in report.get("reasons") or [])[:500] or None,
        "params": {},
    }
    return spec_facet(
        QUALITY, assertions=[*(assertion(c, k) for c, k in [*declared, *extra]), batch]
    )


def training_facet(metrics: dict[str, Any], model_name: str) -> Facet | None:
    """The training's MLflow run and registered version, from the train stage's metrics."""
    if not metrics.get("trained"):
        return None
    production = metrics.get("production_version")
    return custom_facet(
        TRAINING_SCHEMA_URL,
        mlflowRunId=str(metrics["run_id"]),
        registeredModelName=model_name,
        registeredModelVersion=str(metrics["model_version"]),
        promoted=bool(metrics.get("promoted")),
        productionVersion=None if production in (None, "") else str(production),
    )


def _split_parent(value: str) -> tuple[str, str, str]:
    """`namespace/job/run_id`, as the Airflow provider's `lineage_parent_id` macro writes it.

    The namespace may hold slashes (`mainstem://name`); a job name (`dag_id.task_id`) cannot.
    """
    parts = value.strip().rsplit("/", 2)
    namespace, job, run_id = parts if len(parts) == 3 else ("", "", "")
    if not (namespace and job and run_id):
        raise ValueError(f"not a namespace/job/run_id parent: {value!r}")
    return namespace, job, run_id


def parent_facet(parent_id: str, root_id: str | None = None) -> Facet:
    """The ParentRunFacet of a run started by `parent_id` (and, above it, `root_id`)."""
    namespace, job, run_id = _split_parent(parent_id)
    root = None
    if root_id:
        root_namespace, root_job, root_run = _split_parent(root_id)
        root = {
            "run": {"runId": checked_run_id(root_run), "facets": {}},
            "job": {"namespace": root_namespace, "name": root_job, "facets": {}},
        }
    return spec_facet(
        PARENT,
        run={"runId": checked_run_id(run_id), "facets": {}},
        job={"namespace": namespace, "name": job, "facets": {}},
        root=root,
    )
