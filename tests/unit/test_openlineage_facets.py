"""The OpenLineage facets mainstem builds from its contract, reports, metrics and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainstem.errors import ParamsError
from mainstem.openlineage.facets import (
    DatasetState,
    parent_facet,
    quality_assertions,
    statistics_facet,
    training_facet,
)
from mainstem.openlineage.settings import environment_transport, load_settings, parse_settings
from mainstem.validation.contract import load_contract
from tests.conftest import ROOT

TASK_RUN = "01936f3c-5d2e-7c3a-9f61-2b3c4d5e6f70"
DAG_RUN = "01936f3c-5d2e-7c3a-9f61-2b3c4d5e6f71"


def _report(status: str, failures: list[tuple[str, str, int]], reasons: list[str]) -> dict:
    return {
        "status": status,
        "reasons": reasons,
        "failures_by_check": [{"column": c, "check": k, "rows": n} for c, k, n in failures],
    }


def test_parent_names_the_airflow_task_run_and_its_dag_run() -> None:
    facet = parent_facet(
        f"mainstem://ws/data_pipeline_dag.repro/{TASK_RUN}",
        f"mainstem://ws/data_pipeline_dag/{DAG_RUN}",
    )
    assert (facet["job"]["namespace"], facet["job"]["name"], facet["run"]["runId"]) == (
        "mainstem://ws",
        "data_pipeline_dag.repro",
        TASK_RUN,
    )
    root = facet["root"]
    assert (root["job"]["name"], root["run"]["runId"]) == ("data_pipeline_dag", DAG_RUN)


@pytest.mark.parametrize("value", ["", "just-a-run", f"job/{TASK_RUN}", "ns/job/not-a-uuid"])
def test_a_malformed_parent_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"parent|UUID"):
        parent_facet(value)


def test_every_contract_check_is_an_assertion_failed_only_where_rows_failed_it() -> None:
    contract = load_contract(ROOT / "contracts" / "produce" / "v1.yaml")
    report = _report(
        "accepted", [("weight_g", "in_range(1.0, 5000.0)", 2), ("", "row shape", 1)], []
    )
    assertions = quality_assertions(contract, report)["assertions"]
    failed = {(a["column"], a["assertion"], a["actual"]) for a in assertions if not a["success"]}
    assert failed == {("weight_g", "in_range(1.0, 5000.0)", "2"), (None, "row shape", "1")}
    passed = {(a["column"], a["assertion"]) for a in assertions if a["success"]}
    assert {
        ("item_id", "type int64"),
        ("item_id", "unique in batch"),
        ("supplier", "isin(['north', 'south', 'east', 'west'])"),
        ("image_file", "image"),
        (None, "batch accepted"),
    } <= passed


def test_a_rejected_batch_fails_the_batch_assertion_with_its_reason() -> None:
    contract = load_contract(ROOT / "contracts" / "produce" / "v1.yaml")
    report = _report("rejected", [], ["batch-002.csv: missing column(s) grade"])
    assertions = quality_assertions(contract, report)["assertions"]
    (batch,) = [a for a in assertions if a["column"] is None]
    assert not batch["success"]
    assert batch["actual"] == "batch-002.csv: missing column(s) grade"


def test_statistics_count_a_single_file_as_one_file() -> None:
    folder = statistics_facet(DatasetState("data/master.parquet", "ab.dir", 300, 3), 57)
    single = statistics_facet(DatasetState("metrics/master.json", "cd", 120, None), None)
    assert (folder["rowCount"], folder["size"], folder["fileCount"]) == (57, 300, 3)
    assert (single["rowCount"], single["size"], single["fileCount"]) == (None, 120, 1)


def test_training_facet_names_the_mlflow_run_and_registered_version() -> None:
    metrics = {
        "trained": True,
        "run_id": "r1",
        "model_version": 2,
        "promoted": False,
        "production_version": "1",
    }
    facet = training_facet(metrics, "produce-grade")
    assert facet is not None
    assert facet["registeredModelVersion"] == "2"
    assert (facet["mlflowRunId"], facet["productionVersion"], facet["promoted"]) == (
        "r1",
        "1",
        False,
    )
    assert training_facet({"trained": False}, "produce-grade") is None


def test_settings_default_to_the_workspace_folder_and_file_events() -> None:
    settings = parse_settings(Path("/w/houses"), {})
    assert settings.namespace == "mainstem://houses"
    assert settings.events_dir == Path("/w/houses/lineage/openlineage")
    assert (settings.enabled, settings.url) == (True, "")


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"enabled": "yes"}, "openlineage.enabled"),
        ({"url": 5}, "openlineage.url"),
        ({"timeout_seconds": 0}, "openlineage.timeout_seconds"),
    ],
)
def test_a_wrong_setting_names_its_key(section: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=key):
        parse_settings(Path("/w"), {"openlineage": section})


def test_the_standard_environment_variables_configure_a_transport() -> None:
    assert environment_transport({"OPENLINEAGE_URL": "http://127.0.0.1:5000"})
    assert environment_transport({"OPENLINEAGE__TRANSPORT__TYPE": "console"})
    assert not environment_transport({"OPENLINEAGE_DISABLED": "false", "PATH": "/bin"})


def test_events_folder_is_absolute_for_a_relative_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "params.yaml").write_text("openlineage:\n  events_dir: out/events\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(Path(".")).events_dir == tmp_path.resolve() / "out" / "events"
