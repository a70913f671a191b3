"""`dvc push` of a batch's outputs through DVC's Python API, in the process that runs the batch.

In: the workspace and the claimed batch's id. Out: how many files DVC sent to the default remote,
or a BatchFailedError naming the batch and DVC's message. The same push as the `dvc push` command,
without starting a second interpreter that imports DVC and loads the pipeline again: the process
that runs the batch path reads `master_rows` through DVC's API next, and shares the import.
"""

from __future__ import annotations

import os
from contextlib import chdir
from pathlib import Path

from mainstem import crashpoints
from mainstem.commands import QUIET_ENV
from mainstem.errors import BatchFailedError


def push_batch(root: Path, batch_id: str) -> str:
    """Push the workspace's DVC outputs to its default remote; what DVC reports, in words."""
    crashpoints.reach("dvc push")
    from dvc.repo import Repo

    os.environ.update(QUIET_ENV)  # what the `dvc` command gets from `commands.tool_env`
    try:
        # DVC resolves some paths against the current directory, not the repository's
        with chdir(root), Repo(str(root)) as repo:
            pushed = repo.push()
    except Exception as exc:  # DVC raises its own types, and OSError from a local remote
        cause = str(exc) or type(exc).__name__
        if exc.__cause__ is not None:
            cause = f"{cause}: {exc.__cause__}"
        raise BatchFailedError(
            f"batch {batch_id}: `dvc push` failed: {cause}. The batch stays claimed and the "
            "master is unchanged; fix the cause and run again: the next run resumes the batch."
        ) from exc
    return f"{pushed} file(s) pushed"
