"""A batch starts data_pipeline_dag by itself, seconds after its `_READY`: the real scheduler
and triggerer (api-server, scheduler, dag-processor, triggerer on 127.0.0.1, SQLite), no manual
trigger, and a queue of two batches drained without waiting for the five-minute tick."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mainstem.errors import MainstemError
from mainstem.flow.ready_trigger import TICK
from mainstem.intake.submit import submit_to_queue
from mainstem.local.airflow_launcher import AirflowStack
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.local.services import free_port
from mainstem.names import DATA_DAG
from mainstem.params import load_params

UNFINISHED = {"queued", "running"}
TICK_SECONDS = int(TICK.split()[0].removeprefix("*/")) * 60  # "*/5 * * * *": 300


@pytest.fixture
def stack(workspace: Path, tmp_path: Path) -> Iterator[AirflowStack]:
    stack = AirflowStack(workspace, tmp_path / "airflow", port=free_port())
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _runs(stack: AirflowStack) -> list[dict[str, Any]]:
    """The data DAG's runs; none this time when a busy api-server (SQLite) does not answer."""
    try:
        return stack.runs(DATA_DAG)
    except (OSError, MainstemError):
        return [{"state": "queued"}]  # unknown: look again


def _settled(stack: AirflowStack, timeout: float = 180.0) -> None:
    """Wait until no data run is queued or running (the tick's first run, at start, included)."""
    deadline = time.monotonic() + timeout
    while any(run["state"] in UNFINISHED for run in _runs(stack)):
        assert time.monotonic() < deadline, "data_pipeline_dag did not settle"
        time.sleep(1.0)


def _clear_of_the_tick(stack: AirflowStack, margin: float = 120.0) -> None:
    """Wait, when the five-minute tick is due within `margin` seconds, until its run is over.

    A tick that fell between a submit and the asset event would start the run that claims the
    batch, and the test would see a scheduled run instead of an event-driven one.
    """
    to_next_tick = TICK_SECONDS - time.time() % TICK_SECONDS
    if to_next_tick < margin:
        time.sleep(to_next_tick + 5.0)
        _settled(stack)


def _claimed_by(stack: AirflowStack, names: set[str], timeout: float) -> dict[str, Any]:
    """The finished run that claimed each batch in `names`, by name."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while set(found) != names:
        assert time.monotonic() < deadline, f"claimed so far: {sorted(found)}"
        for run in _runs(stack):
            if run["state"] in UNFINISHED:
                continue
            try:
                taken = stack.batches_of(run["dag_run_id"])
            except (OSError, MainstemError):
                continue
            for batch in taken:
                if batch.get("name") in names:
                    found[str(batch["name"])] = run
        time.sleep(1.0)
    return found


@pytest.mark.e2e
def test_a_ready_batch_starts_its_run_and_the_queue_drains_by_itself(
    stack: AirflowStack, workspace: Path, tmp_path: Path
) -> None:
    _settled(stack)
    _clear_of_the_tick(stack)
    incoming = load_params(workspace).ingest.incoming_dir
    for number, name in ((1, "first"), (2, "second")):
        folder = make_batch(tmp_path / name, BatchSpec(number, first_id=number * 100, rows=10))
        submit_to_queue([folder], incoming, name)

    runs = _claimed_by(stack, {"first", "second"}, timeout=600.0)

    assert {run["state"] for run in runs.values()} == {"success"}
    # started by the drop folder's asset event, not by a person and not by the tick
    assert runs["first"]["run_type"] == "asset_triggered"
    # the second waited in the queue; the first's run took it after the first, or a run
    # started by the event or by the drain (this DAG triggering itself) did
    assert runs["second"]["run_type"] in {"asset_triggered", "operator_triggered"}
    assert not any(incoming.glob("*/_READY"))
