"""Claim, crash, recover and release in any order, on a real drop folder, with real processes.

Every claimant is a process of its own (forked, so it starts in milliseconds) that claims and then
holds whatever it got until it is told to process the batch (snapshot it into the raw store, then
release it) or is killed. Crashes are real: a SIGKILL from outside, or the crash hook killing the
claimant at its n-th write point in the middle of a claim or a release. After every step:
- at most one live process holds the batch, and the lock names it;
- no delivered batch is lost: it is in the raw store, or all its files are still in the drop folder
  and claimable (`_READY` or a lock is there);
- no batch is ingested twice: raw sequence numbers run 1..n without repeats;
and a claim made while no live process holds the batch must succeed.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mainstem import crashpoints
from mainstem.intake import lock
from mainstem.intake.delivery import PROCESSING, READY, DeliveredFile, read_delivery, scan
from mainstem.intake.dropfolder import Claimed, claim_batch, release_batch
from mainstem.intake.ingest import ingest_claimed, list_raw_batches
from mainstem.intake.submit import submit
from mainstem.params import IngestParams
from tests.conftest import ingest_params

FORK = multiprocessing.get_context("fork")
REPLY_SECONDS = 30


def _arm_crash(crash_at: int | None, counter: Path) -> None:
    """In a claimant: die at its `crash_at`-th write point from now on (this process only)."""
    os.environ.pop(crashpoints.KILL_GROUP, None)
    if crash_at is None:
        os.environ.pop(crashpoints.CRASH_AT, None)
        os.environ.pop(crashpoints.COUNTER, None)
        return
    counter.unlink(missing_ok=True)
    os.environ[crashpoints.COUNTER] = str(counter)
    os.environ[crashpoints.CRASH_AT] = str(crash_at)


def _claimant(
    params: IngestParams, run_id: str, crash_at: int | None, counter: Path, conn: Connection
) -> None:
    _arm_crash(crash_at, counter)
    result = claim_batch(params, run_id, time.time())
    conn.send(type(result).__name__)
    while True:
        command, crash_at = conn.recv()
        if command == "exit":
            return
        _arm_crash(crash_at, counter)
        assert isinstance(result, Claimed)
        lock.heartbeat(params.incoming_dir, result.owner, time.time())
        ingest_claimed(params)
        release_batch(params, None)
        conn.send("Released")


class Claimant:
    """The parent's handle on one claimant process."""

    def __init__(self, params: IngestParams, run_id: str, crash_at: int | None, scratch: Path):
        self.run_id = run_id
        self.conn, child_end = FORK.Pipe()
        counter = scratch / f"{run_id}.count"
        self.process = FORK.Process(
            target=_claimant, args=(params, run_id, crash_at, counter, child_end)
        )
        self.process.start()
        child_end.close()
        self.claimed = self._reply() == "Claimed"

    def _reply(self) -> str | None:
        """The claimant's answer, or None when it died (its crash hook fired)."""
        try:
            if not self.conn.poll(REPLY_SECONDS):
                raise AssertionError(f"claimant {self.run_id} hung")
            return str(self.conn.recv())
        except EOFError:
            self.process.join()
            return None

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def process_batch(self, crash_at: int | None) -> bool:
        """Ingest and release; True when it finished, False when the crash hook killed it."""
        self.conn.send(("process", crash_at))
        return self._reply() == "Released"

    def kill(self) -> None:
        self.process.kill()
        self.process.join()

    def stop(self) -> None:
        if self.alive:
            self.conn.send(("exit", None))
            self.process.join(REPLY_SECONDS)
        if self.alive:
            self.kill()


class DropFolderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="mainstem-claims-"))
        self.params = ingest_params(self.root)
        self.params.incoming_dir.mkdir()
        (self.root / "scratch").mkdir()
        self.delivered: dict[str, tuple[DeliveredFile, ...]] = {}
        self.sources: list[Path] = []
        self.claimants: list[Claimant] = []
        self.holder: Claimant | None = None

    def teardown(self) -> None:
        for claimant in self.claimants:
            claimant.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- what the drop folder shows --------------------------------------------------------------

    def _payload(self) -> list[str]:
        found, problems = scan(self.params.incoming_dir)
        return [rel for rel, _info in found] + [p.path for p in problems]

    def _marked(self) -> bool:
        incoming = self.params.incoming_dir
        return (incoming / READY).exists() or (incoming / PROCESSING).exists()

    def _live_holder(self) -> Claimant | None:
        if self.holder is not None and not self.holder.alive:
            self.holder = None
        return self.holder

    # -- rules -----------------------------------------------------------------------------------

    @precondition(lambda self: not self._marked())
    @rule(repeat_earlier=st.booleans())
    def deliver(self, repeat_earlier: bool) -> None:
        """A producer delivers a new batch, or the content of an earlier one under a new name."""
        if self._payload():
            return  # an unclaimed remnant is the operator's to clear; not a new delivery
        number = len(self.sources) + 1
        if repeat_earlier and self.sources:
            source = self.sources[0]
        else:
            source = self.root / "sources" / f"b{number}"
            (source / "images").mkdir(parents=True)
            (source / "table.csv").write_text(f"item_id,image_file\n{number},images/{number}.png\n")
            (source / "images" / f"{number}.png").write_bytes(bytes([number % 256]) * 300)
        self.sources.append(source)
        delivery = read_delivery(source)
        self.delivered[delivery.batch_id] = delivery.files
        submit([source], self.params.incoming_dir, f"delivery-{number}")

    @rule(crash_at=st.none() | st.integers(min_value=1, max_value=6))
    def claim(self, crash_at: int | None) -> None:
        """A new claimant (a scheduled run, a manual trigger, a retry) tries to take the batch."""
        live_before = self._live_holder()
        claimable = live_before is None and self._marked()
        claimant = Claimant(
            self.params, f"run-{len(self.claimants)}", crash_at, self.root / "scratch"
        )
        self.claimants.append(claimant)
        if claimant.claimed:
            assert live_before is None, "a second claimant won while the holder was alive"
            self.holder = claimant
        else:
            claimant.stop()
            if claimable and crash_at is None:
                raise AssertionError("no live holder, the batch is marked, yet the claim failed")

    @precondition(lambda self: any(c.alive for c in self.claimants))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        """A worker dies: the machine is lost, the task is killed, the pod is evicted."""
        live = [c for c in self.claimants if c.alive]
        data.draw(st.sampled_from(live)).kill()

    @precondition(lambda self: self._live_holder() is not None)
    @rule(crash_at=st.none() | st.integers(min_value=1, max_value=8))
    def process(self, crash_at: int | None) -> None:
        """The holder snapshots the batch into the raw store and releases the drop folder."""
        holder = self._live_holder()
        assert holder is not None
        if holder.process_batch(crash_at):
            self.holder = None
            holder.stop()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def at_most_one_live_holder_and_the_lock_names_it(self) -> None:
        holders = [c for c in self.claimants if c.alive and c is self.holder]
        assert len(holders) <= 1
        if holders:
            owner = lock.read_owner(self.params.incoming_dir)
            assert owner is not None
            assert owner.run_id == holders[0].run_id

    @invariant()
    def no_delivered_batch_is_lost(self) -> None:
        ingested = {raw.batch_id for raw in list_raw_batches(self.params.raw_dir)}
        payload = set(self._payload())
        for batch_id, files in self.delivered.items():
            if batch_id in ingested:
                continue
            assert {f.path for f in files} <= payload, f"batch {batch_id} lost its files"
            assert self._marked(), f"batch {batch_id} is in the drop folder but nobody can claim it"

    @invariant()
    def no_batch_is_ingested_twice(self) -> None:
        sequences = [raw.sequence for raw in list_raw_batches(self.params.raw_dir)]
        assert sequences == list(range(1, len(sequences) + 1))
        assert not self.params.quarantine_dir.exists()


DropFolderMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_claim_crash_recover_release_sequences = DropFolderMachine.TestCase
