"""A stage run's inputs and outputs as OpenLineage datasets, with their facets.

In: the workspace's params, the stage's name and DVC's view of its datasets; the active contract,
the stage's metrics file and the latest validation report, read here. Out: InputDataset and
OutputDataset lists. Datasets are named by the OpenLineage naming spec for files (`file://<host>`,
absolute path); each carries its DVC hash as its version, the data folders the contract's schema,
outputs their statistics (rows as the stage's metrics count them), and the validate stage's input
the data-quality assertions of the batch it validated. The datasets are JSON dicts (see `spec`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mainstem.durable import read_json_object
from mainstem.intake.raw_store import pack_path
from mainstem.openlineage import facets
from mainstem.openlineage.facets import DatasetState, Facet
from mainstem.openlineage.spec import dataset
from mainstem.params import Params
from mainstem.validation.layout import batch_dir, read_report

if TYPE_CHECKING:
    from mainstem.validation.contract import Contract

# the train stage reads the master, named by its request: its events carry the master's schema
_READS_SCHEMA = frozenset({"validate", "train"})


def file_namespace(host: str | None = None) -> str:
    return f"file://{host or socket.gethostname()}"


@dataclass
class StageFacts:
    """What a stage's own files say about its datasets, keyed by workspace-relative path."""

    rows: dict[str, int] = field(default_factory=dict)
    schema_paths: set[str] = field(default_factory=set)
    assertions: dict[str, Facet] = field(default_factory=dict)
    extra_inputs: list[DatasetState] = field(default_factory=list)


def _relative(params: Params, path: Path) -> str:
    return path.relative_to(params.root).as_posix()


def _metric(path: Path, key: str) -> int | None:
    value = (read_json_object(path) or {}).get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def stage_facts(params: Params, stage: str, contract: Contract | None) -> StageFacts:
    """Row counts, schema-bearing paths and quality assertions for `stage`, from its files."""
    validated = _relative(params, batch_dir(params.validate.validated_dir))
    master = _relative(params, params.merge.master_dir)
    facts = StageFacts(schema_paths={validated, master})
    if stage == "validate":
        metrics = read_json_object(params.validate.metrics_file) or {}
        rows = _metric(params.validate.metrics_file, "rows_accepted_total")
        if rows is not None:
            facts.rows[validated] = rows
        report = read_report(params.validate.validated_dir, str(metrics.get("last_batch_id", "")))
        if report is not None and contract is not None:
            facts.assertions[_relative(params, pack_path(params.ingest.raw_dir))] = (
                facets.quality_assertions(contract, report)
            )
    elif stage == "merge":
        rows = _metric(params.merge.metrics_file, "master_rows")
        if rows is not None:
            facts.rows[master] = rows
    elif stage == "train":
        request = read_json_object(params.train.request_file) or {}
        if request.get("master_md5"):
            # the master a training reads is named by its request, not by a DVC dependency
            facts.extra_inputs.append(DatasetState(master, str(request["master_md5"]), None, None))
    return facts


def active_contract(params: Params) -> Contract | None:
    from mainstem.validation.contract import load_contract  # pandera: only when it is needed

    path = params.validate.contract_path
    return load_contract(path, check_schema=False) if path.is_file() else None


def stage_contract(
    params: Params, stage: str, states: tuple[list[DatasetState], list[DatasetState]]
) -> Contract | None:
    """The active contract when the stage's events carry it (a schema-bearing folder among its
    datasets, or the validate stage's quality assertions); None otherwise, without loading it."""
    schema_paths = {
        _relative(params, params.validate.validated_dir),
        _relative(params, params.merge.master_dir),
    }
    paths = {state.path for state in [*states[0], *states[1]]}
    if stage in _READS_SCHEMA or paths & schema_paths:
        return active_contract(params)
    return None


def build_datasets(
    params: Params,
    states: tuple[list[DatasetState], list[DatasetState]],
    facts: StageFacts,
    contract: Contract | None,
) -> tuple[list[Facet], list[Facet]]:
    """The OpenLineage datasets of a finished stage run."""
    namespace = file_namespace()
    inputs_states, outputs_states = states

    def common(state: DatasetState) -> dict[str, Facet]:
        found = {"version": facets.version_facet(state)}
        if contract is not None and state.path in facts.schema_paths:
            found["schema"] = facets.schema_facet(contract)
        return found

    def name(state: DatasetState) -> str:
        return str(params.root / state.path)

    inputs = []
    for state in [*inputs_states, *facts.extra_inputs]:
        input_facets: dict[str, Facet] = {}
        if state.path in facts.assertions:
            input_facets["dataQualityAssertions"] = facts.assertions[state.path]
        inputs.append(dataset(namespace, name(state), common(state), "inputFacets", input_facets))
    outputs = [
        dataset(
            namespace,
            name(state),
            common(state),
            "outputFacets",
            {"outputStatistics": facets.statistics_facet(state, facts.rows.get(state.path))},
        )
        for state in outputs_states
    ]
    return inputs, outputs
