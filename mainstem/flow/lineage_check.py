"""The lineage check: can each DVC output a commit pins still be had, and if not, why?

In: a workspace and a commit (any revision). Out: one `OutputCheck` per output in that commit's
`dvc.lock`: `stored` when git (an output DVC does not cache), the DVC cache or one of the
workspace's remotes holds it (a directory output with every file it lists), `dropped` when it is
a raw pack that retention dropped (with the batch, the `gc:` commit and its date), `missing`
otherwise, which is real damage. Nothing is fetched or written: objects are looked up where
`dvc pull` would find them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mainstem.commands import git
from mainstem.flow.gc import dropped_by
from mainstem.intake.raw_store import cached_pack
from mainstem.intake.raw_tombstones import tombstones_dir
from mainstem.params import load_params

STORED, DROPPED, MISSING = "stored", "dropped", "missing"
_BATCH_ID = re.compile(r'"batch_id":\s*"([0-9a-f]+)"')


@dataclass(frozen=True)
class OutputCheck:
    path: str
    md5: str
    state: str
    dropped: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.state == DROPPED and self.dropped:
            d = self.dropped
            return (
                f"{self.path}: dropped by retention in {str(d['gc_commit'])[:12]} on "
                f"{d['dropped_at']} (batch {d['batch_id']}, kept {d['keep_raw_days']:g} days); "
                "not damage: the master and the validated results of that commit stay"
            )
        if self.state == MISSING:
            return f"{self.path}: MISSING (md5 {self.md5}) from the DVC cache and every remote"
        return f"{self.path}: stored"


def dvc_lock_at(root: Path, rev: str) -> dict[str, Any]:
    """`dvc.lock` as commit `rev` holds it; {} when it has none."""
    shown = git(["show", f"{rev}:dvc.lock"], root, check=False)
    loaded = yaml.safe_load(shown.stdout) if shown.returncode == 0 else None
    return loaded if isinstance(loaded, dict) else {}


def locked_outputs(lock: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, md5) of every output in a `dvc.lock`, in stage order."""
    found = []
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("md5"):
                found.append((str(out["path"]), str(out["md5"])))
    return found


class _Lookup:
    """Whether an object is in the DVC cache or a remote; a directory's listing from either."""

    def __init__(self, root: Path) -> None:
        from dvc.repo import Repo

        self.root = root
        self.repo = Repo(str(root))
        names = sorted(self.repo.config["remote"])
        self.remotes = [self.repo.cloud.get_remote_odb(n, "check") for n in names]

    def close(self) -> None:
        self.repo.close()

    def read(self, md5: str) -> bytes | None:
        cached = cached_pack(self.root, md5)
        if cached.is_file():
            return cached.read_bytes()
        for odb in self.remotes:
            path = odb.oid_to_path(md5)
            if odb.fs.exists(path):
                return bytes(odb.fs.cat_file(path))
        return None

    def has(self, md5: str) -> bool:
        if cached_pack(self.root, md5).is_file():
            return True
        return any(odb.fs.exists(odb.oid_to_path(md5)) for odb in self.remotes)

    def stored(self, md5: str) -> bool:
        if not md5.endswith(".dir"):
            return self.has(md5)
        listing = self.read(md5)
        if listing is None:
            return False
        return all(self.has(str(entry["md5"])) for entry in json.loads(listing))


def _dropped(root: Path, md5: str) -> dict[str, Any] | None:
    """The retention record of the raw pack `md5`, as HEAD holds it; None when none names it."""
    raw_dir = load_params(root).ingest.raw_dir
    where = tombstones_dir(raw_dir).relative_to(root).as_posix()
    found = git(["grep", "-h", "-F", md5, "HEAD", "--", where], root, check=False).stdout
    for row in found.splitlines():
        match = _BATCH_ID.search(row)
        info = dropped_by(root, raw_dir, match.group(1)) if match else None
        if match and info is not None and info["pack_md5"] == md5:
            return {**info, "batch_id": match.group(1)}
    return None


def _tracked(root: Path, rev: str, paths: list[str]) -> set[str]:
    """Which of `paths` git itself holds at `rev`: the outputs DVC does not cache (metrics)."""
    if not paths:
        return set()
    shown = git(["ls-tree", "-r", "--name-only", rev, "--", *paths], root, check=False)
    return set(shown.stdout.splitlines()) & set(paths)


def check_commit(root: Path, rev: str = "HEAD") -> list[OutputCheck]:
    """Each output commit `rev` pins, and whether it is stored, dropped by retention or missing."""
    root = Path(root).resolve()
    outputs = locked_outputs(dvc_lock_at(root, rev))
    in_git = _tracked(root, rev, [path for path, _md5 in outputs])
    lookup = _Lookup(root)
    try:
        checks = []
        for path, md5 in outputs:
            if path in in_git or lookup.stored(md5):
                checks.append(OutputCheck(path, md5, STORED))
                continue
            dropped = _dropped(root, md5)
            checks.append(OutputCheck(path, md5, DROPPED if dropped else MISSING, dropped))
        return checks
    finally:
        lookup.close()
