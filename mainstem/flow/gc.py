"""`mainstem gc --keep-raw DAYS`: drop old raw packs from the DVC cache and remotes, in lineage.

In: a workspace with no batch claimed, the age to keep, the clock. Out: for each pack
`retention.select_drops` picks, a tombstone beside the raw index, all committed in one `gc:`
commit; then the packs are deleted from every DVC remote the workspace configures (local paths,
S3, anything DVC's own file systems reach) and from the local DVC cache. History is never
rewritten: earlier commits still pin the packs, and read as dropped by retention.

The order keeps lineage honest through a crash: the tombstones are committed before any byte is
deleted, so lineage never claims a pack that is gone. A gc killed after its commit leaves
packs that are tombstoned but still stored; the next gc first finishes the deletions of the last
`gc:` commit (only the last can be unfinished, as every gc finishes it before going on), then
drops what has aged since. Tombstones a killed gc wrote but did not commit are removed first.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mainstem import crashpoints
from mainstem.commands import git
from mainstem.durable import read_json_object
from mainstem.errors import LockError, RetentionError
from mainstem.flow.lineage import record
from mainstem.flow.retention import Drop, PackAge, gc_message, lineage_date, select_drops
from mainstem.intake import lock
from mainstem.intake.raw_store import INDEX, cached_pack, pack_meta, pack_path, records
from mainstem.intake.raw_tombstones import (
    Tombstone,
    tombstone_of,
    tombstones_dir,
    write_tombstones,
)
from mainstem.master.batch_log import read_summary
from mainstem.params import Params, load_params

log = logging.getLogger(__name__)
GC_TITLE = "gc: "
MASTER_MANIFEST = "_manifest.json"  # master.MANIFEST; importing that module loads pyarrow


@dataclass
class GcResult:
    """What a gc did (or, dry, would do): the packs dropped, their bytes, the commit."""

    drops: list[Drop]
    commit: str | None = None
    finished: list[str] = field(default_factory=list)  # packs an earlier, cut-short gc left
    dry_run: bool = False

    @property
    def size(self) -> int:
        return sum(d.record.size for d in self.drops)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "commit": self.commit,
            "bytes": self.size,
            "finished_from_earlier_gc": self.finished,
            "dropped": [
                {
                    "batch_id": d.record.batch_id,
                    "sequence": d.record.sequence,
                    "name": d.record.name,
                    "pack_md5": d.record.md5,
                    "bytes": d.record.size,
                    "lineage_commit": d.age.commit,
                    "lineage_date": lineage_date(d.age),
                }
                for d in self.drops
            ],
        }


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


_BATCH_ID_LINE = re.compile(r'^\+.*"batch_id":\s*"([0-9a-f]+)"')


def _ids_added(patch: str) -> list[str]:
    """The batch ids on the lines a patch adds: an id line of a shard, or a record file's field
    (the layout before segments); one pattern reads both."""
    return [m.group(1) for row in patch.splitlines() if (m := _BATCH_ID_LINE.match(row))]


def lineage_commits(root: Path, raw_dir: Path) -> dict[str, tuple[str, int]]:
    """Each batch id → the first commit that added its id line, and that commit's time.

    One walk of git history for the whole id index, not one per batch.
    """
    where = _relative(root, raw_dir / INDEX / "id")
    shown = git(
        ["log", "--unified=0", "--no-renames", "--format=%x00%H %ct", "-p", "--", where], root
    ).stdout
    found: dict[str, tuple[str, int]] = {}
    for chunk in shown.split("\0")[1:]:
        head, _newline, patch = chunk.partition("\n")
        commit, stamp = head.split()
        for batch_id in _ids_added(patch):
            found[batch_id] = (commit, int(stamp))  # newest first: the oldest is kept
    return found


def _merged_through(params: Params) -> int:
    """The sequence of the last batch the master applied; 0 when its manifest has no summary."""
    manifest = read_json_object(params.merge.master_dir / MASTER_MANIFEST) or {}
    summary = read_summary(manifest)
    return summary.last.sequence if summary and summary.last else 0


def _pinned_batch(params: Params) -> str:
    """The batch whose pack is the workspace's current one (HEAD's dvc.lock pins it)."""
    return str((pack_meta(pack_path(params.ingest.raw_dir)) or {}).get("batch_id") or "")


def _refuse_while_claimed(params: Params) -> None:
    holder = lock.read_owner(params.ingest.incoming_dir)
    if holder is not None:
        raise LockError(
            f"batch {holder.batch_id} is claimed by {holder.describe()}; gc runs only while no "
            "batch is in process: let the run finish (`mainstem process` resumes it), then run "
            "`mainstem gc` again"
        )


def plan(params: Params, now: float, keep_days: float) -> list[Drop]:
    """The packs a gc at `now` would drop."""
    raw_dir = params.ingest.raw_dir
    commits = lineage_commits(params.root, raw_dir)
    ages = []
    for found in records(raw_dir):
        commit, stamp = commits.get(found.batch_id, (None, None))
        ages.append(PackAge(found, commit, stamp))
    merged = _merged_through(params)
    keep = {a.record.batch_id for a in ages if a.record.sequence > merged}
    keep |= {a.record.batch_id for a in ages if tombstone_of(raw_dir, a.record.batch_id)}
    keep.add(_pinned_batch(params))
    return select_drops(ages, now, keep_days, keep)


class _Stores:
    """The DVC cache and every configured remote, reached through DVC's own file systems."""

    def __init__(self, root: Path) -> None:
        from dvc.repo import Repo

        self.root = root
        self.repo = Repo(str(root))
        try:
            names = sorted(self.repo.config["remote"])
            self.remotes = [(n, self.repo.cloud.get_remote_odb(n, "gc")) for n in names]
        except Exception as error:  # DVC raises many kinds for a bad remote config
            self.repo.close()
            raise RetentionError(f"could not open the DVC remotes of {root}: {error}") from None

    def close(self) -> None:
        self.repo.close()

    def delete(self, md5: str) -> None:
        """Delete the object `md5` from every remote, then from the cache; absent is fine."""
        for name, odb in self.remotes:
            path = odb.oid_to_path(md5)
            try:
                if odb.fs.exists(path):
                    crashpoints.reach("gc drop remote")
                    odb.fs.remove(path)
            except Exception as error:  # any remote's own failure: name it, keep the rest
                raise RetentionError(
                    f"could not delete {md5} from DVC remote {name}: {error}; its tombstone is "
                    "committed: fix the remote and run `mainstem gc` again to finish"
                ) from None
        cached = cached_pack(self.root, md5)
        if cached.exists():
            crashpoints.reach("gc drop cache")
            cached.unlink()


def _clear_uncommitted_tombstones(root: Path, raw_dir: Path) -> None:
    """Undo the tombstones a gc wrote and was killed before committing: the shards back to
    HEAD's, the new ones removed."""
    where = _relative(root, tombstones_dir(raw_dir))
    git(["reset", "--quiet", "--", where], root, check=False)
    git(["checkout", "--quiet", "--", where], root, check=False)
    loose = git(["ls-files", "--others", "--", where], root).stdout.splitlines()
    for name in loose:
        (root / name).unlink(missing_ok=True)


def _last_gc_tombstones(root: Path, raw_dir: Path) -> list[Tombstone]:
    """The tombstones the last `gc:` commit added: the only ones whose deletions may be unfinished
    (every gc finishes them before it drops more)."""
    where = _relative(root, tombstones_dir(raw_dir))
    last = git(
        ["log", "-1", "--format=%H", f"--grep=^{GC_TITLE}", "--", where], root
    ).stdout.strip()
    if not last:
        return []
    patch = git(
        ["show", "--format=", "--unified=0", "--no-renames", last, "--", where], root
    ).stdout
    found = [tombstone_of(raw_dir, batch_id) for batch_id in dict.fromkeys(_ids_added(patch))]
    return [t for t in found if t is not None]


def _tombstone(drop: Drop, keep_days: float) -> Tombstone:
    r, commit = drop.record, drop.age.commit or ""
    date = lineage_date(drop.age)
    return Tombstone(r.batch_id, r.sequence, r.name, r.md5, r.size, commit, date, keep_days)


def collect_garbage(root: Path, keep_days: float, now: float, dry_run: bool = False) -> GcResult:
    """Drop the raw packs older than `keep_days` at `now` (see the module's docstring)."""
    root = Path(root).resolve()
    params = load_params(root)
    raw_dir = params.ingest.raw_dir
    _refuse_while_claimed(params)
    if dry_run:
        return GcResult(plan(params, now, keep_days), dry_run=True)
    _clear_uncommitted_tombstones(root, raw_dir)
    stores = _Stores(root)
    try:
        earlier = _last_gc_tombstones(root, raw_dir)
        for stone in earlier:
            stores.delete(stone.md5)
        drops = plan(params, now, keep_days)
        result = GcResult(drops, finished=[t.batch_id for t in earlier])
        if not drops:
            return result
        crashpoints.reach("gc tombstone")
        paths = write_tombstones(raw_dir, [_tombstone(drop, keep_days) for drop in drops])
        _refuse_while_claimed(params)  # a claim may have come while the tombstones were written
        result.commit = record(root, paths, gc_message(drops, keep_days))
        for drop in drops:
            stores.delete(drop.record.md5)
    finally:
        stores.close()
    log.info("gc: dropped %d raw pack(s), %d bytes", len(drops), result.size)
    return result


def dropped_by(root: Path, raw_dir: Path, batch_id: str) -> dict[str, Any] | None:
    """For a batch whose pack retention dropped: the `gc:` commit and its date; else None."""
    stone = tombstone_of(raw_dir, batch_id)
    if stone is None:
        return None
    where = _relative(root, tombstones_dir(raw_dir))
    shown = git(
        ["log", "-1", "--format=%H %cI", f"--grep=^{GC_TITLE}", f"-S{batch_id}", "--", where],
        root,
        check=False,
    )
    commit, _sep, date = shown.stdout.strip().partition(" ")
    return {
        "gc_commit": commit or None,
        "dropped_at": date or None,
        "pack_md5": stone.md5,
        "lineage_commit": stone.lineage_commit,
        "keep_raw_days": stone.keep_raw_days,
    }


def last_gc(root: Path, raw_dir: Path) -> dict[str, Any] | None:
    """The last `gc:` commit (its id, date and title); None when retention never dropped a pack."""
    if not tombstones_dir(raw_dir).is_dir():
        return None  # no gc ever: spare status a walk of the whole history
    where = _relative(root, tombstones_dir(raw_dir))
    shown = git(
        ["log", "-1", "--format=%H%x00%cI%x00%s", f"--grep=^{GC_TITLE}", "--", where],
        root,
        check=False,
    ).stdout.strip()
    if not shown:
        return None
    commit, date, title = shown.split("\0", 2)
    return {"commit": commit, "date": date, "title": title}


def describe_gc(result: GcResult) -> list[str]:
    """The result as lines a person reads."""
    verb = "would drop" if result.dry_run else "dropped"
    lines = []
    if result.finished:
        lines.append(f"finished the deletions of an earlier gc ({len(result.finished)} pack(s))")
    if not result.drops:
        return [
            *lines,
            "nothing to drop: every raw pack is younger than the age to keep, or in use",
        ]
    lines.append(
        f"{verb} the raw packs of {len(result.drops)} batch(es), {result.size} bytes, from the "
        "DVC cache and every DVC remote:"
    )
    for drop in result.drops:
        r = drop.record
        name = f" ({r.name})" if r.name else ""
        lines.append(
            f"  #{r.sequence} {r.batch_id}{name}: {r.size} bytes, lineage "
            f"{(drop.age.commit or '?')[:12]} of {lineage_date(drop.age)}"
        )
    if result.commit:
        lines.append(f"recorded in {result.commit[:12]}")
    return lines
