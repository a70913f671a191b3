"""What the batch path no longer repeats: a second read of `master_rows`, the contract (and
pandera) in a stage whose OpenLineage events carry no schema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mainstem.errors import MainstemError
from mainstem.flow.batch import publish
from mainstem.flow.runner import FlowRun
from mainstem.openlineage.datasets import stage_contract
from mainstem.openlineage.facets import DatasetState
from mainstem.params import Params, load_params
from tests.conftest import ROOT


@pytest.fixture
def params(tmp_path: Path) -> Params:
    """A workspace's params whose active contract is not a contract at all."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    loaded = load_params(tmp_path)
    loaded.validate.contract_path.parent.mkdir(parents=True)
    loaded.validate.contract_path.write_text("columns: [unclosed\n", encoding="utf-8")
    return loaded


def _states(*paths: str) -> tuple[list[DatasetState], list[DatasetState]]:
    first, *rest = [DatasetState(p, "0" * 32, 1, None) for p in paths]
    return [first], rest


def test_publish_takes_master_rows_as_the_lineage_step_read_them(tmp_path: Path) -> None:
    published: list[int] = []
    # no workspace at tmp_path: reading the metrics through DVC again would fail
    run = FlowRun(tmp_path, "run-1", published.append)

    assert publish(run, {"master_rows": 1234}) == {"master_rows": 1234}
    assert published == [1234]


def test_ingest_events_never_load_the_contract(params: Params) -> None:
    states = _states("data/claimed_batch.json", "data/raw/batch.tar")

    assert stage_contract(params, "ingest", states) is None


@pytest.mark.parametrize(
    ("stage", "paths"),
    [
        ("validate", ("data/raw/batch.tar", "data/validated")),
        ("merge", ("data/validated", "data/master.parquet")),
        ("train", ("models/train_request.json", "models/current")),
    ],
)
def test_stages_whose_events_carry_the_schema_load_the_contract(
    params: Params, stage: str, paths: tuple[str, ...]
) -> None:
    with pytest.raises(MainstemError):
        stage_contract(params, stage, _states(*paths))
