"""The event trigger that starts data_pipeline_dag: it fires once per new `_READY`, no more."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from mainstem.flow.ready_trigger import ReadyBatchTrigger, new_ready
from mainstem.intake.submit import submit_to_queue
from mainstem.params import load_params
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("seen", "now_ready", "fresh"),
    [
        (set(), set(), []),
        (set(), {("b", 2.0), ("a", 1.0)}, ["a", "b"]),
        ({("a", 1.0)}, {("a", 1.0)}, []),
        ({("a", 1.0)}, {("a", 1.0), ("c", 3.0)}, ["c"]),
        ({("a", 1.0)}, {("a", 5.0)}, ["a"]),  # the same name delivered again later
        ({("a", 1.0), ("b", 2.0)}, set(), []),  # claimed: nothing to fire for
    ],
)
def test_only_a_ready_marker_not_seen_before_fires(
    seen: set[tuple[str, float]], now_ready: set[tuple[str, float]], fresh: list[str]
) -> None:
    assert new_ready(seen, now_ready) == fresh


def test_the_trigger_round_trips_through_its_serialized_form() -> None:
    trigger = ReadyBatchTrigger("/some/workspace", poll_seconds=0.5)

    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)

    assert rebuilt.serialize() == (classpath, kwargs)


def test_the_trigger_fires_for_each_new_batch_once(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    incoming = load_params(tmp_path).ingest.incoming_dir
    source = tmp_path / "source"
    source.mkdir()
    (source / "table.csv").write_text("item_id\n1\n")
    trigger = ReadyBatchTrigger(str(tmp_path), poll_seconds=0.01)

    async def watch() -> list[object]:
        events = trigger.run()
        submit_to_queue([source], incoming, "first")
        first = await asyncio.wait_for(anext(events), 5)
        submit_to_queue([source], incoming, "second")
        second = await asyncio.wait_for(anext(events), 5)
        with pytest.raises(TimeoutError):  # nothing new: no third event
            await asyncio.wait_for(anext(events), 0.3)
        return [first.payload, second.payload]

    assert asyncio.run(watch()) == [{"ready": ["first"]}, {"ready": ["second"]}]


def test_the_dag_runs_again_only_while_a_batch_waits_and_the_lock_is_free(tmp_path: Path) -> None:
    from mainstem.flow.queue_drain import batches_waiting
    from mainstem.intake import lock

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    incoming = load_params(tmp_path).ingest.incoming_dir
    source = tmp_path / "source"
    source.mkdir()
    (source / "table.csv").write_text("item_id\n1\n")
    assert not batches_waiting(tmp_path)  # no drop folder yet

    submit_to_queue([source], incoming, "waiting")
    assert batches_waiting(tmp_path)

    # a run that stopped on an error left its batch claimed: the tick resumes it, not a loop
    assert lock.acquire(incoming, lock.owner_for("failed-run", 0.0, entry="other"))
    assert not batches_waiting(tmp_path)
