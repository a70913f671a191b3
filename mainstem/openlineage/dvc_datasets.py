"""A stage's inputs and outputs as DVC sees them: paths, hashes, sizes and file counts.

In: the workspace root and a stage name. Out: DatasetState for each data dependency and each
output of the stage, hashed by DVC itself (its state database spares unchanged files a re-read),
so the version is the one `dvc repro` writes to dvc.lock once the stage's command has exited.
Code (mainstem/, stages/) and params are left out: they are not datasets.
"""

from __future__ import annotations

import os
from pathlib import Path

from mainstem.openlineage.facets import DatasetState

CODE = ("mainstem", "stages")


def _is_data(path: str) -> bool:
    return path.split("/")[0] not in CODE


def stage_datasets(root: Path, stage_name: str) -> tuple[list[DatasetState], list[DatasetState]]:
    """(inputs, outputs) of `stage_name` as they are on disk now."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    cwd = Path.cwd()
    os.chdir(root)
    try:
        with Repo(str(root)) as repo:
            # dvc.yaml alone: the repo's index would walk the whole workspace for .dvc files
            stage = repo.stage.load_one("dvc.yaml", stage_name)
            deps = [d for d in stage.deps if not isinstance(d, ParamsDependency)]
            inputs = [_state(d) for d in deps if _is_data(str(d.def_path))]
            outputs = [_state(o) for o in stage.outs]
    finally:
        os.chdir(cwd)
    return inputs, outputs


def _state(item: object) -> DatasetState:
    hash_info = item.get_hash()  # type: ignore[attr-defined]
    meta = item.meta  # type: ignore[attr-defined]
    return DatasetState(
        path=str(item.def_path),  # type: ignore[attr-defined]
        md5=str(hash_info.value),
        size=getattr(meta, "size", None),
        nfiles=getattr(meta, "nfiles", None),
    )
