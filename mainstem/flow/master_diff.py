"""`mainstem diff A B`: how the master changed between two lineage commits.

In: a workspace and two revisions (commits, or batch ids or names that the lineage commits carry).
Out: the keys added, updated and removed in the master from A to B, with counts and a sample, the
deltas of the master metrics, and how many parts were read. Each commit's `dvc.lock` names the
master's DVC directory listing, which gives every part's hash: only the parts whose hash differs
are read (from the DVC cache), so a batch that touched two parts of a hundred reads four files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mainstem.commands import git
from mainstem.errors import MainstemError
from mainstem.params import Params

SAMPLE = 5
MANIFEST = "_manifest.json"


def resolve_revision(root: Path, revision: str) -> str:
    """A commit id for `revision`: a git revision, else the lineage commit of a batch id or name."""
    found = git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], root, check=False)
    if found.returncode == 0:
        return found.stdout.strip()
    log = git(["log", "--reverse", "--format=%H %s"], root).stdout.splitlines()
    for line in log:
        commit, _, subject = line.partition(" ")
        if not subject.startswith("batch ") or "duplicate delivery" in subject:
            continue
        batch_id = subject.split()[1]
        if batch_id.startswith(revision) or f"({revision})" in subject.split(":")[0]:
            return commit
    raise MainstemError(
        f"'{revision}' is neither a commit nor a batch id or name in the lineage (`git log`)"
    )


def _cache_file(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def master_listing(params: Params, commit: str) -> dict[str, str]:
    """Each file of the master at `commit` with its DVC hash (the manifest included)."""
    root = params.root
    shown = git(["show", f"{commit}:dvc.lock"], root, check=False)
    stages = (yaml.safe_load(shown.stdout) or {}).get("stages", {}) if shown.returncode == 0 else {}
    outs = (stages.get("merge") or {}).get("outs") or []
    if not outs:
        return {}
    listing = _cache_file(root, str(outs[0]["md5"]))
    try:
        entries = json.loads(listing.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MainstemError(
            f"the master of commit {commit[:12]} is not in the DVC cache; run "
            f"`dvc fetch --rev {commit[:12]}` (or `dvc pull`) first"
        ) from exc
    return {str(e["relpath"]): str(e["md5"]) for e in entries}


def _metrics(params: Params, commit: str) -> dict[str, Any]:
    path = params.merge.metrics_file.relative_to(params.root).as_posix()
    shown = git(["show", f"{commit}:{path}"], params.root, check=False)
    loaded = json.loads(shown.stdout) if shown.returncode == 0 and shown.stdout.strip() else {}
    return loaded if isinstance(loaded, dict) else {}


def metric_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each numeric metric that changed: its value before, after, and the difference."""
    deltas = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
        if numbers and old != new:
            deltas[name] = {"before": old, "after": new, "delta": new - old}  # type: ignore[operator]
    return deltas


@dataclass
class MasterDiff:
    old: str
    new: str
    parts_total: int = 0
    parts_read: int = 0
    added: list[Any] = field(default_factory=list)
    updated: list[Any] = field(default_factory=list)
    removed: list[Any] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.old,
            "to": self.new,
            "parts_total": self.parts_total,
            "parts_read": self.parts_read,
            **{
                name: {"count": len(keys), "sample": keys[:SAMPLE]}
                for name, keys in (
                    ("added", self.added),
                    ("updated", self.updated),
                    ("removed", self.removed),
                )
            },
            "metrics": self.metrics,
        }


def _read_part(root: Path, md5: str | None) -> Any:
    import pyarrow.parquet as pq

    return None if md5 is None else pq.read_table(_cache_file(root, md5)).to_pandas()


def compare_part(before: Any, after: Any, key: str) -> tuple[list[Any], list[Any], list[Any]]:
    """Keys (added, updated, removed) between two versions of one part (None: absent)."""
    import pandas as pd

    old = before.set_index(key) if before is not None else pd.DataFrame()
    new = after.set_index(key) if after is not None else pd.DataFrame()
    added = sorted(set(new.index) - set(old.index))
    removed = sorted(set(old.index) - set(new.index))
    common = new.index.intersection(old.index)
    if list(old.columns) != list(new.columns):  # another contract: every kept row is restated
        return added, sorted(common.tolist()), removed
    left, right = old.loc[common], new.loc[common]
    differs = ~((left == right) | (left.isna() & right.isna())).all(axis=1)
    return added, sorted(common[differs.to_numpy()].tolist()), removed


def master_diff(params: Params, old_revision: str, new_revision: str) -> MasterDiff:
    """The master's changes from `old_revision` to `new_revision`, reading only changed parts."""
    root = params.root
    old, new = resolve_revision(root, old_revision), resolve_revision(root, new_revision)
    before, after = master_listing(params, old), master_listing(params, new)
    result = MasterDiff(
        old, new, metrics=metric_deltas(_metrics(params, old), _metrics(params, new))
    )
    # the manifest and the batch log start with `_`, like every file Parquet readers skip
    parts = sorted(name for name in set(before) | set(after) if not name.startswith("_"))
    result.parts_total = sum(1 for name in after if not name.startswith("_"))
    key = _key(root, after.get(MANIFEST) or before.get(MANIFEST))
    for part in parts:
        if before.get(part) == after.get(part):
            continue
        added, updated, removed = compare_part(
            _read_part(root, before.get(part)), _read_part(root, after.get(part)), key
        )
        result.parts_read += (part in before) + (part in after)
        result.added += added
        result.updated += updated
        result.removed += removed
    return result


def _key(root: Path, manifest_md5: str | None) -> str:
    if manifest_md5 is None:
        return "item_id"
    manifest = json.loads(_cache_file(root, manifest_md5).read_text(encoding="utf-8"))
    return str(manifest["key"])


def describe_diff(diff: MasterDiff) -> list[str]:
    lines = [
        f"master {diff.old[:12]} → {diff.new[:12]}: {len(diff.added)} added, "
        f"{len(diff.updated)} updated, {len(diff.removed)} removed "
        f"({diff.parts_read} part files read of {diff.parts_total} parts)"
    ]
    for name, keys in (("added", diff.added), ("updated", diff.updated), ("removed", diff.removed)):
        if keys:
            more = f" ... and {len(keys) - SAMPLE} more" if len(keys) > SAMPLE else ""
            lines.append(f"  {name}: {', '.join(map(str, keys[:SAMPLE]))}{more}")
    for name, delta in diff.metrics.items():
        lines.append(f"  {name}: {delta['before']} → {delta['after']} ({delta['delta']:+})")
    return lines
