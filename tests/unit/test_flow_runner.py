"""The runner: one declared list of steps, each lock-holding step proving and renewing the lock."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from mainstem.errors import LockError
from mainstem.flow.runner import FlowRun, run_flow, run_step
from mainstem.flow.sequences import BATCH_FLOW, TRAINING_FLOW, Flow, Step, StepState
from mainstem.intake import lock
from mainstem.params import load_params
from tests.conftest import ROOT

_HERE = "tests.unit.test_flow_runner"
CALLS: list[tuple[str, float | None]] = []


def _heartbeat(run: FlowRun) -> float | None:
    holder = lock.read_owner(run.params.ingest.incoming_dir)
    return holder.heartbeat_at if holder else None


def first(run: FlowRun, state: StepState) -> StepState:
    CALLS.append(("first", _heartbeat(run)))
    return {"first": True}


def second(run: FlowRun, state: StepState) -> StepState:
    CALLS.append(("second", _heartbeat(run)))
    return {"seen_first": state["first"]}


def stop(run: FlowRun, state: StepState) -> None:
    CALLS.append(("stop", None))


FLOW = Flow(
    "test_path",
    (
        Step("first", f"{_HERE}:first", holds_lock=True),
        Step("second", f"{_HERE}:second", holds_lock=True),
    ),
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    load_params(tmp_path).ingest.incoming_dir.mkdir(parents=True)
    CALLS.clear()
    return tmp_path


def _lock_for(root: Path, run_id: str, at: float) -> lock.LockOwner:
    owner = lock.owner_for(run_id, at, "b1")
    assert lock.acquire(load_params(root).ingest.incoming_dir, owner)
    return owner


def test_every_lock_holding_step_renews_the_lock_before_it_runs(root: Path) -> None:
    claimed_at = time.time() - 600
    _lock_for(root, "run-1", claimed_at)

    state = run_flow(FLOW, FlowRun(root, "run-1"))

    assert state == {"first": True, "seen_first": True}
    (_, first_beat), (_, second_beat) = CALLS
    assert first_beat is not None
    assert second_beat is not None
    assert claimed_at < first_beat <= second_beat


def test_a_run_that_lost_the_lock_stops_before_its_step_writes(root: Path) -> None:
    _lock_for(root, "someone-else", time.time())

    with pytest.raises(LockError, match="run-1 no longer holds the batch lock"):
        run_flow(FLOW, FlowRun(root, "run-1"))
    assert CALLS == []


def test_a_released_lock_stops_a_single_step_too(root: Path) -> None:
    with pytest.raises(LockError, match="held by nobody"):
        run_step(FLOW, "second", FlowRun(root, "run-1"), {"first": True})
    assert CALLS == []


def test_a_step_with_nothing_to_do_ends_the_path(root: Path) -> None:
    flow = Flow("stops", (Step("stop", f"{_HERE}:stop"), Step("first", f"{_HERE}:first")))

    assert run_flow(flow, FlowRun(root, "run-1")) is None
    assert CALLS == [("stop", None)]


@pytest.mark.parametrize("flow", [BATCH_FLOW, TRAINING_FLOW], ids=lambda f: f.name)
def test_every_declared_step_names_a_function(flow: Flow) -> None:
    names = [step.name for step in flow.steps]
    assert len(set(names)) == len(names)
    for step in flow.steps:
        assert callable(step.function())


def test_only_the_claim_may_end_the_batch_path_and_it_takes_the_lock_itself() -> None:
    assert [s.name for s in BATCH_FLOW.steps if s.may_stop] == ["claim"]
    assert [s.name for s in BATCH_FLOW.steps if not s.holds_lock] == ["claim"]


def test_an_unknown_step_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="has no step 'deploy'"):
        BATCH_FLOW.step("deploy")
