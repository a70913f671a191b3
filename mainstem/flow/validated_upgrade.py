"""The validated store of a workspace made before it was packed: found, and cleared for a rebuild.

In: the workspace's validated folder. Out: whether it holds the old layout (one DVC directory
output: `<batch_id>/` report folders, a shared `images/` store, `_state.json`), how many batches
it held, and the folder with that layout removed, so the validate stage, which then finds no
`index/state.json`, re-validates every raw batch into the new layout (this batch's results as
`batch/`, every batch's files in the DVC cache, the git-tracked index). The old files need no
copy: each lineage commit's `dvc.lock` pins them in the DVC remote, so old commits still pull.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mainstem.validation.layout import BATCH, INDEX

_OLD_IMAGES = "images"


def legacy_entries(validated_dir: Path) -> list[Path]:
    """What the old layout left in the validated folder: batch folders, images/, _state.json."""
    if not validated_dir.is_dir():
        return []
    return sorted(
        entry
        for entry in validated_dir.iterdir()
        if entry.name not in (BATCH, INDEX, ".gitignore") and not entry.name.startswith(".")
    )


def clear_legacy_validated(validated_dir: Path) -> int:
    """Remove the old layout's files; how many batch folders it held."""
    entries = legacy_entries(validated_dir)
    batches = sum(1 for e in entries if e.is_dir() and e.name != _OLD_IMAGES)
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return batches if entries else 0


def drop_ignored_output(folder: Path) -> Path:
    """Stop git ignoring all of `folder` (an old whole-folder output's entry in its parent's
    .gitignore): its index is git's now. The .gitignore, changed or not."""
    ignore = folder.parent / ".gitignore"
    if ignore.is_file():
        entry = f"/{folder.name}"
        lines = ignore.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() != entry]
        if kept != lines:
            ignore.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    return ignore
