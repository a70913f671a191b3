"""What changed in a workspace's pipeline since its last commit, and the refusal to run under it.

In: a workspace. Out: the pipeline files that differ from the last commit (`pipeline_changes`),
the param changes as `key old → new` lines and the pipeline commit's message (pure), and
`require_committed_pipeline`, which the batch path calls before it claims a batch and again before
`dvc repro`: no batch runs under a pipeline that is not committed, so every commit mainstem makes
is a complete snapshot (checked out and pulled, `dvc status` finds nothing to do). Recording the
change is `pipeline_commit.commit_pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainstem.commands import git
from mainstem.errors import PipelineChangedError
from mainstem.params import PARAMS_FILE, Params

# What defines the pipeline: its settings, contracts, stage graph and the code the stages run.
PIPELINE_PATHS = (PARAMS_FILE, "dvc.yaml", "contracts", "stages", "mainstem", "dags")


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: str  # "added", "modified" or "deleted"

    def describe(self) -> str:
        return self.path if self.kind == "modified" else f"{self.path} ({self.kind})"


def parse_porcelain(output: str) -> list[FileChange]:
    """`git status --porcelain -z` entries as changes, sorted by path."""
    changes = []
    for entry in output.split("\0"):
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        kind = "added" if "?" in code or "A" in code else "deleted" if "D" in code else "modified"
        changes.append(FileChange(path, kind))
    return sorted(changes, key=lambda c: c.path)


def pipeline_changes(root: Path) -> list[FileChange]:
    """The pipeline files that differ from the workspace's last commit (untracked ones too)."""
    if not (root / ".git").exists():
        return []
    args = ["status", "--porcelain", "-z", "--untracked-files=all", "--no-renames", "--"]
    return parse_porcelain(git([*args, *PIPELINE_PATHS], root).stdout)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys: {"validate": {"contract_version": 2}} → one key."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def param_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Each changed param as `key old → new` (— for a key that is absent on one side)."""
    old, new = flatten(before), flatten(after)
    return [
        f"{key} {old.get(key, '—')} → {new.get(key, '—')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def pipeline_title(params_changed: list[str], files: list[FileChange], contract: str) -> str:
    """The first line: the param changes (and the contract they select), else the files."""
    if params_changed:
        shown = "; ".join(params_changed[:3]) + ("; ..." if len(params_changed) > 3 else "")
        if any(line.startswith("validate.") for line in params_changed):
            shown += f" (contract {contract})"
        return f"pipeline: {shown}"
    shown = ", ".join(f.describe() for f in files[:3]) + (", ..." if len(files) > 3 else "")
    return f"pipeline: {shown}"


def pipeline_message(
    params_changed: list[str],
    files: list[FileChange],
    contract: str,
    rows: tuple[int, int],
    note: str = "",
) -> str:
    body = [
        *(f"params.yaml: {line}" for line in params_changed),
        "files: " + ", ".join(f.describe() for f in files),
        f"master: {rows[0]} → {rows[1]} rows",
    ]
    text = pipeline_title(params_changed, files, contract) + "\n\n" + "\n".join(body) + "\n"
    return text + (f"\n{note.rstrip()}\n" if note else "")


def _discard_hint(changes: list[FileChange]) -> str:
    tracked = [c.path for c in changes if c.kind != "added"]
    added = [c.path for c in changes if c.kind == "added"]
    steps = []
    if tracked:
        steps.append(f"`git checkout HEAD -- {' '.join(tracked)}`")
    if added:
        steps.append(f"remove {', '.join(added)}")
    return " and ".join(steps) + ", then `dvc checkout`"


def require_committed_pipeline(params: Params) -> None:
    """A PipelineChangedError when the pipeline differs from the last commit, saying what to do."""
    if not params.lineage_enabled:
        return
    changes = pipeline_changes(params.root)
    if not changes:
        return
    shown = ", ".join(c.describe() for c in changes[:5]) + (", ..." if len(changes) > 5 else "")
    raise PipelineChangedError(
        f"the pipeline changed since the last commit ({shown}); no batch or training "
        "runs under an uncommitted pipeline. To keep the change, run `mainstem pipeline "
        "commit` (for a new contract, `mainstem contract use N`); to discard it, "
        f"{_discard_hint(changes)}. Then run again."
    )
