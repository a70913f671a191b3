"""A stateless worker: the batch path on a machine that keeps no workspace between batches.

In: the lineage repository's git remote, the DVC remote, a claimed batch as a local folder, a
scratch folder, and optionally a DVC cache folder the machine keeps. Out: the batch's lineage
commit on the git remote, or the finding that the remote already holds it. The steps:

1. clone the lineage repository into the scratch folder;
2. pull only the outputs `dvc repro merge` updates in place (the validate and merge stages'
   `persist` directories, whose DVC hash is taken over the whole folder after the run); never
   the raw pack of the last batch (ingest writes this batch's) nor the model;
3. deliver the batch into the clone's drop folder and run the whole batch path there (claim,
   `dvc repro merge`, `dvc push`, the lineage commit), as `mainstem process` does;
4. `git push`, the commit point: data first, so a pushed commit never names data the remote
   lacks. A push the remote refuses as non-fast-forward is fetched: when the commits the remote
   gained since the clone include this batch's, another worker did it and this one is done;
   otherwise a HistoryDivergedError. Never a force-push.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mainstem.commands import dvc, git
from mainstem.errors import (
    DvcObjectMissingError,
    HistoryDivergedError,
    MainstemError,
    RemoteUnreachableError,
)
from mainstem.flow.batch import BatchRun, process_next_batch
from mainstem.flow.lineage import batch_of_subject
from mainstem.flow.workspace import REMOTE_ENDPOINT_ENV, REMOTE_URL_ENV
from mainstem.intake.delivery import MANIFEST, PROCESSING, READY
from mainstem.intake.dropfolder import Claimed
from mainstem.intake.submit import submit
from mainstem.params import load_params

log = logging.getLogger(__name__)
# The stages whose outputs `dvc repro merge` extends in place (`persist: true` directories).
PULL_STAGES = ("validate", "merge")
_REJECTED_PUSH = re.compile(r"\[rejected\]|non-fast-forward|fetch first|\[remote rejected\]")
# DVC names an object it could not fetch by its md5; these causes mean the remote lacks it.
_FAILED_OBJECT = re.compile(
    r"failed to transfer '([0-9a-f]{32}(?:\.dir)?)' - .*?"
    r"(No such file or directory|Not Found|NoSuchKey|404|does not exist)"
)
_MISSING_LISTED = re.compile(r"^\s*name: (\S+), md5: ([0-9a-f]{32}(?:\.dir)?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class WorkerSettings:
    """Where a worker finds the lineage and the data, and what it may keep between batches."""

    git_remote: str
    dvc_remote: str | None = None  # None: MAINSTEM_REMOTE_URL, else params.yaml's remote.url
    cache_dir: Path | None = None  # a DVC cache the machine keeps; None: one per clone
    branch: str | None = None  # None: the remote's default branch


@dataclass(frozen=True)
class PullCost:
    """What the per-batch pull fetched into the DVC cache."""

    bytes: int
    files: int
    seconds: float


@dataclass(frozen=True)
class Checkout:
    """A scratch clone of the lineage, ready for one batch."""

    root: Path
    branch: str
    base: str  # the commit the clone started from
    pulled: PullCost


@dataclass(frozen=True)
class WorkerRun:
    """What became of one batch on a worker."""

    run: BatchRun
    checkout: Checkout
    outcome: str  # "pushed", "already done", or "nothing to push"
    commit: str | None  # the lineage commit the remote holds for the batch


def push_was_rejected(stderr: str) -> bool:
    """Whether `git push` failed because the remote branch moved on (not for any other cause)."""
    return bool(_REJECTED_PUSH.search(stderr))


def commit_of_batch(log_lines: str, batch_id: str) -> str | None:
    """The newest commit naming `batch_id` in `git log --format=%H %s` output; None if none."""
    for line in log_lines.splitlines():
        commit, _, subject = line.partition(" ")
        if batch_of_subject(subject) == batch_id:
            return commit
    return None


def missing_objects(dvc_output: str) -> list[str]:
    """The objects DVC says the remote lacks (md5, or "path (md5)"); [] when it names none."""
    failed = [md5 for md5, _cause in _FAILED_OBJECT.findall(dvc_output)]
    listed = [f"{name} ({md5})" for name, md5 in _MISSING_LISTED.findall(dvc_output)]
    return sorted(set(failed)) + listed


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def clone_lineage(settings: WorkerSettings, dest: Path) -> tuple[str, str]:
    """Clone the lineage remote's branch into `dest`; the branch and the commit it is at."""
    args = ["clone", "--quiet", "--no-tags", "--single-branch"]
    if settings.branch:
        args += ["--branch", settings.branch]
    cloned = git([*args, settings.git_remote, str(dest)], dest.parent, check=False)
    if cloned.returncode != 0:
        raise RemoteUnreachableError(
            f"cannot clone the lineage remote {settings.git_remote}: "
            f"{_last_line(cloned.stderr)}; check the URL and that this machine can reach it"
        )
    head = git(["rev-parse", "HEAD"], dest, check=False)
    if head.returncode != 0:
        raise HistoryDivergedError(
            f"the lineage remote {settings.git_remote} has no commits; create the workspace "
            "with `mainstem init` and push it there first"
        )
    branch = git(["symbolic-ref", "--short", "HEAD"], dest).stdout.strip()
    return branch, head.stdout.strip()


def dvc_remote_url(settings: WorkerSettings, root: Path) -> str:
    """The DVC remote this worker uses; a MainstemError when it would be a path of the clone."""
    url = settings.dvc_remote or os.environ.get(REMOTE_URL_ENV) or load_params(root).remote.url
    if "://" not in url and not Path(url).is_absolute():
        raise MainstemError(
            f"the DVC remote {url!r} is a path relative to a workspace, and a worker has none; "
            f"pass --dvc-remote URL or set {REMOTE_URL_ENV}"
        )
    if "://" not in url and not Path(url).is_dir():
        raise RemoteUnreachableError(f"the DVC remote {url} does not exist on this machine")
    return url


def connect_dvc(settings: WorkerSettings, root: Path) -> None:
    """Point the clone at the DVC remote (and the kept cache), in `.dvc/config.local` only."""
    name = load_params(root).remote.name
    dvc(
        ["remote", "add", "--local", "--force", "--default", name, dvc_remote_url(settings, root)],
        root,
    )
    endpoint = os.environ.get(REMOTE_ENDPOINT_ENV) or load_params(root).remote.endpointurl
    if endpoint:
        dvc(["remote", "modify", "--local", name, "endpointurl", endpoint], root)
    if settings.cache_dir is not None:
        cache = Path(settings.cache_dir).resolve()
        cache.mkdir(parents=True, exist_ok=True)
        dvc(["cache", "dir", "--local", str(cache)], root)


def cache_dir(settings: WorkerSettings, root: Path) -> Path:
    return Path(settings.cache_dir).resolve() if settings.cache_dir else root / ".dvc" / "cache"


def _objects(cache: Path) -> dict[str, int]:
    found = {}
    for folder, _dirs, files in os.walk(cache / "files"):
        for name in files:
            path = os.path.join(folder, name)
            found[path] = os.path.getsize(path)
    return found


def pull_needed(root: Path, cache: Path) -> PullCost:
    """`dvc pull` of what `dvc repro merge` extends in place; what it fetched into the cache."""
    before = _objects(cache)
    start = time.perf_counter()
    pulled = dvc(["pull", *PULL_STAGES], root, check=False)
    seconds = time.perf_counter() - start
    if pulled.returncode != 0:
        output = f"{pulled.stdout}\n{pulled.stderr}"
        missing = missing_objects(output)
        if missing:
            raise DvcObjectMissingError(
                f"the DVC remote lacks {len(missing)} object(s) the lineage names, e.g. "
                f"{missing[0]}; push them from the workspace that made them (`dvc push`)"
            )
        raise RemoteUnreachableError(f"`dvc pull` from the DVC remote failed: {_last_line(output)}")
    after = _objects(cache)
    new = {path: size for path, size in after.items() if path not in before}
    return PullCost(sum(new.values()), len(new), seconds)


def prepare(settings: WorkerSettings, scratch: Path) -> Checkout:
    """Steps 1 and 2: a clone of the lineage in `scratch/lineage`, its needed outputs pulled."""
    scratch.mkdir(parents=True, exist_ok=True)
    root = scratch / "lineage"
    branch, base = clone_lineage(settings, root)
    connect_dvc(settings, root)
    pulled = pull_needed(root, cache_dir(settings, root))
    log.info("pulled %d objects, %d bytes in %.1f s", pulled.files, pulled.bytes, pulled.seconds)
    return Checkout(root, branch, base, pulled)


def deliver(batch: Path, incoming: Path) -> None:
    """Put the claimed batch into the clone's drop folder: files, manifest, then `_READY`."""
    if not batch.is_dir():
        raise MainstemError(f"{batch} is not a folder; give the claimed batch's folder")
    if not (batch / MANIFEST).exists():
        submit([batch], incoming, batch.name)
        return
    # a drop-zone batch keeps its producer's manifest, checked by the claim as usual
    incoming.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        batch, incoming, dirs_exist_ok=True, ignore=shutil.ignore_patterns(READY, PROCESSING)
    )
    (incoming / READY).write_bytes(b"")


def process(checkout: Checkout, batch: Path, run_id: str | None = None) -> BatchRun:
    """Step 3 (and 4, `dvc push`, inside the batch path): the batch through the clone."""
    deliver(batch, load_params(checkout.root).ingest.incoming_dir)
    run_id = run_id or f"worker-{socket.gethostname()}-{os.getpid()}"
    return process_next_batch(checkout.root, run_id)


def publish(checkout: Checkout, batch_id: str) -> tuple[str, str]:
    """Step 5: `git push`, the commit point; ("pushed" or "already done", the batch's commit)."""
    root = checkout.root
    head = git(["rev-parse", "HEAD"], root).stdout.strip()
    pushed = git(
        ["push", "--quiet", "origin", f"HEAD:refs/heads/{checkout.branch}"], root, check=False
    )
    if pushed.returncode == 0:
        return "pushed", head
    if not push_was_rejected(pushed.stderr):
        raise RemoteUnreachableError(
            f"cannot push the lineage of batch {batch_id} to the git remote: "
            f"{_last_line(pushed.stderr)}; the batch was not recorded, run it again"
        )
    fetched = git(["fetch", "--quiet", "origin", checkout.branch], root, check=False)
    if fetched.returncode != 0:
        raise RemoteUnreachableError(
            f"the git remote refused the push of batch {batch_id} and cannot be fetched: "
            f"{_last_line(fetched.stderr)}"
        )
    gained = git(["log", "--format=%H %s", f"{checkout.base}..FETCH_HEAD"], root).stdout
    done = commit_of_batch(gained, batch_id)
    if done is not None:
        log.info("batch %s was already recorded by %s: done", batch_id, done[:12])
        return "already done", done
    tip = git(["rev-parse", "FETCH_HEAD"], root).stdout.strip()
    raise HistoryDivergedError(
        f"the lineage remote moved on from {checkout.base[:12]} to {tip[:12]} without batch "
        f"{batch_id}, so its commit was not pushed (never forced); process the batch again "
        "on a fresh clone"
    )


def finish(checkout: Checkout, run: BatchRun) -> WorkerRun:
    """Publish the batch's lineage commit, when the batch path made one."""
    claim = run.claim
    if run.commit is None or not isinstance(claim, Claimed):
        return WorkerRun(run, checkout, "nothing to push", None)
    outcome, commit = publish(checkout, claim.batch_id)
    return WorkerRun(run, checkout, outcome, commit)


def process_batch(settings: WorkerSettings, batch: Path, scratch: Path | None = None) -> WorkerRun:
    """Every step for one batch; in a temporary scratch folder, removed after, unless given."""
    if scratch is not None:
        return finish(checkout := prepare(settings, scratch), process(checkout, batch))
    temporary = Path(tempfile.mkdtemp(prefix="mainstem-worker-"))
    try:
        checkout = prepare(settings, temporary)
        return finish(checkout, process(checkout, batch))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
