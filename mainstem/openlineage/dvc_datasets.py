"""A stage's inputs and outputs as DVC sees them: paths, hashes, sizes and file counts.

In: the workspace root and a stage name. Out: DatasetState for each data dependency and each
output of the stage, hashed by DVC itself (its state database spares unchanged files a re-read),
so the version is the one `dvc repro` writes to dvc.lock once the stage's command has exited.
Code (mainstem/, stages/) and params are left out: they are not datasets.

`load_definitions` reads a stage's definition and drops it. DVC builds its YAML parsers, schema
validators and regular expressions the first time a process reads a pipeline; the warm stage host
calls it once, so each stage it forks describes its datasets in 0.06-0.1 s instead of 0.25 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mainstem.openlineage.facets import DatasetState

if TYPE_CHECKING:
    from dvc.repo import Repo

CODE = ("mainstem", "stages")
# the workspaces whose pipeline this process (or the process it was forked from) has read
DEFINITIONS_LOADED: set[str] = set()


def _is_data(path: str) -> bool:
    return path.split("/")[0] not in CODE


def stage_datasets(root: Path, stage_name: str) -> tuple[list[DatasetState], list[DatasetState]]:
    """(inputs, outputs) of `stage_name` as they are on disk now."""
    from dvc.dependency.param import ParamsDependency

    with _opened(root) as repo:
        # dvc.yaml alone: the repo's index would walk the whole workspace for .dvc files
        stage = repo.stage.load_one("dvc.yaml", stage_name)
        deps = [d for d in stage.deps if not isinstance(d, ParamsDependency)]
        inputs = [_state(d) for d in deps if _is_data(str(d.def_path))]
        outputs = [_state(o) for o in stage.outs]
    return inputs, outputs


def load_definitions(root: Path, stage_name: str) -> None:
    """Read `stage_name`'s definition as `stage_datasets` does, hashing nothing, and drop it."""
    with _opened(root) as repo:
        repo.stage.load_one("dvc.yaml", stage_name)
    DEFINITIONS_LOADED.add(str(root))


@contextmanager
def _opened(root: Path) -> Iterator[Repo]:
    """DVC's repository at `root`, with `root` as the current directory (DVC resolves some
    paths against it); closed, and the directory restored, when the block ends."""
    from dvc.repo import Repo

    cwd = Path.cwd()
    os.chdir(root)
    try:
        with Repo(str(root)) as repo:
            yield repo
    finally:
        os.chdir(cwd)


def _state(item: object) -> DatasetState:
    hash_info = item.get_hash()  # type: ignore[attr-defined]
    meta = item.meta  # type: ignore[attr-defined]
    return DatasetState(
        path=str(item.def_path),  # type: ignore[attr-defined]
        md5=str(hash_info.value),
        size=getattr(meta, "size", None),
        nfiles=getattr(meta, "nfiles", None),
    )
