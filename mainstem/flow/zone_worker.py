"""The batch path on a stateless worker that takes its batches from the S3 drop zone itself.

In: the lineage repository's git remote and the DVC remote (`WorkerSettings`), a lineage whose
`params.yaml` names an S3 drop zone (`ingest.incoming_dir: s3://...`), and the id of the run.
Out: one lineage commit on the git remote per batch taken from the zone, the batch cleared from
the zone (or quarantined there with its report), and a `ZoneBatch` per batch saying what became
of it.

One clone serves every batch of a drain. For each batch, in this order:
1. the claim: the oldest ready batch's `_PROCESSING` lease (created, or taken over once stale),
   its objects fetched into the clone's staging folder, the local checks run on them;
2. `dvc repro merge`, `dvc push`, the lineage commit, each after renewing the lease;
3. `git push`, the commit point (`worker.publish`: a refused push whose batch the remote
   already holds is done; any other refusal stops with HistoryDivergedError, nothing forced);
4. only then the release: the batch cleared from S3 (or quarantined) and the lease dropped.
A worker killed anywhere before step 4 leaves the lease, which another worker takes over once it
is stale (`ingest.stale_lock_seconds`, or `dead_owner_grace_seconds` for a dead process on the
same host) and processes the batch from the start on its own clone. Killed between steps 3 and
4, the batch's commit is already on the remote: the next holder finds it in its clone's history,
fetches that batch's validated files if its clone's pull did not bring them (later commits came
first), and only releases the batch, so the lineage holds one commit per delivery.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mainstem.commands import git
from mainstem.errors import BatchRejectedError, MainstemError
from mainstem.flow.runner import FlowRun, run_step
from mainstem.flow.sequences import BATCH_FLOW, StepState
from mainstem.flow.validated_transfer import fetch_batch
from mainstem.flow.worker import Checkout, WorkerSettings, prepare, publish
from mainstem.intake.dropfolder import Claimed, Idle, Rejected
from mainstem.names import WORKER_NAME_ENV
from mainstem.params import load_params

log = logging.getLogger(__name__)
GIT_REMOTE_ENV = "MAINSTEM_GIT_REMOTE"
CACHE_DIR_ENV = "MAINSTEM_WORKER_CACHE_DIR"
# the steps between the claim and the push; the release comes after the push
_BEFORE_PUSH = ("repro", "push", "record_lineage")
_AFTER_PUSH = ("publish", "release")


@dataclass(frozen=True)
class ZoneBatch:
    """What became of one batch taken from the drop zone."""

    name: str | None
    batch_id: str
    outcome: str  # pushed, already done, already recorded, rejected, rejected at claim
    commit: str | None
    claimed_at: float  # when this worker had the batch (its lease taken, its files checked)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch_id": self.batch_id,
            "outcome": self.outcome,
            "commit": self.commit,
            "claimed_at": self.claimed_at,
        }


def settings_from_env(git_remote: str = "") -> WorkerSettings:
    """A worker's settings from its environment; a MainstemError naming what is missing."""
    remote = git_remote or os.environ.get(GIT_REMOTE_ENV, "")
    if not remote:
        raise MainstemError(
            f"no lineage git remote: set {GIT_REMOTE_ENV} in the workers' environment "
            "(or pass git_remote) to the bare repository or Git server holding the lineage"
        )
    cache = os.environ.get(CACHE_DIR_ENV)
    return WorkerSettings(remote, cache_dir=Path(cache) if cache else None)


def recorded_commit(root: Path, batch_id: str, name: str | None) -> str | None:
    """The commit of the clone's history recording this delivery (batch id and name), if any."""
    title = f"batch {batch_id} ({name}): " if name else f"batch {batch_id}: "
    found = git(["log", "--format=%H %s", "--fixed-strings", f"--grep={title}"], root).stdout
    for line in found.splitlines():
        commit, _, subject = line.partition(" ")
        if subject.startswith(title):
            return commit
    return None


def _steps(run: FlowRun, names: tuple[str, ...], state: StepState) -> StepState:
    for name in names:
        state = run_step(BATCH_FLOW, name, run, state) or state
    return state


def _rejected_at_claim(run: FlowRun, claimed_at: float) -> ZoneBatch:
    result = run.seen["claim"]
    batch_id = result.batch_id if isinstance(result, Rejected) else "unknown"
    return ZoneBatch(None, batch_id, "rejected at claim", None, claimed_at)


def process_one(checkout: Checkout, run_id: str) -> ZoneBatch | Idle:
    """Claim the oldest ready batch of the zone and carry it through, push before release."""
    run = FlowRun(checkout.root, run_id)
    try:
        state = run_step(BATCH_FLOW, "claim", run, {})
    except BatchRejectedError as exc:
        log.warning("%s", exc)
        return _rejected_at_claim(run, time.time())
    claimed_at = time.time()
    claim = run.seen["claim"]
    if state is None or not isinstance(claim, Claimed):
        return claim if isinstance(claim, Idle) else Idle("nothing claimed")
    done = recorded_commit(checkout.root, claim.batch_id, claim.name)
    if done is None:
        head = git(["rev-parse", "HEAD"], checkout.root).stdout.strip()
        state = _steps(run, _BEFORE_PUSH, state)
        outcome, commit = publish(replace(checkout, base=head), claim.batch_id)
    else:
        log.warning("batch %s is recorded by %s already: releasing it", claim.batch_id, done)
        fetch_batch(checkout.root, claim.batch_id)  # its report, if a later commit is the pull's
        outcome, commit = "already recorded", done
    try:
        _steps(run, _AFTER_PUSH, state)
    except BatchRejectedError as exc:
        log.warning("%s", exc)
        outcome = "rejected"
    return ZoneBatch(claim.name, claim.batch_id, outcome, commit, claimed_at)


@dataclass(frozen=True)
class Drain:
    """How long a drain goes on: at most `max_batches` (0: no limit), and how long it waits for
    a batch another claimant holds to become free (0: it leaves such a batch to a later run)."""

    max_batches: int = 0
    lease_wait_seconds: float = 0.0
    poll_seconds: float = 5.0


def drain(
    take: Callable[[], ZoneBatch | Idle],
    limits: Drain,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ZoneBatch]:
    """Batches from `take` (one claim and its batch path each) until none is ready, or the
    limit; a batch under another claimant's lease is waited for up to `lease_wait_seconds`."""
    done: list[ZoneBatch] = []
    waiting_since: float | None = None
    while not limits.max_batches or len(done) < limits.max_batches:
        result = take()
        if isinstance(result, ZoneBatch):
            done.append(result)
            waiting_since = None
            continue
        if not result.locked:
            break
        waiting_since = clock() if waiting_since is None else waiting_since
        if clock() - waiting_since >= limits.lease_wait_seconds:
            log.info("leaving a leased batch to a later run: %s", result.reason)
            break
        log.info("waiting for a lease to expire: %s", result.reason)
        sleep(limits.poll_seconds)
    return done


def drain_zone(
    settings: WorkerSettings, run_id: str, limits: Drain, scratch_parent: Path | None = None
) -> list[ZoneBatch]:
    """Clone the lineage into a scratch folder, drain the zone there, remove the folder."""
    scratch = Path(tempfile.mkdtemp(prefix="mainstem-zone-", dir=scratch_parent))
    try:
        checkout = prepare(settings, scratch)
        zone = load_params(checkout.root).ingest.drop_zone_url
        if not zone:
            raise MainstemError(
                f"the lineage at {settings.git_remote} has no S3 drop zone; set "
                "ingest.incoming_dir: s3://bucket/prefix in its params.yaml and commit it"
            )
        return drain(lambda: process_one(checkout, run_id), limits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def drain_zone_task(git_remote: str, run_id: str, limits: Drain) -> dict[str, Any]:
    """What an Airflow task runs: settings from the worker's environment, a small result."""
    batches = drain_zone(settings_from_env(git_remote), run_id, limits, Path.cwd())
    return {
        "worker": os.environ.get(WORKER_NAME_ENV, ""),
        "pid": os.getpid(),
        "run_id": run_id,
        "batches": [batch.summary() for batch in batches],
    }
