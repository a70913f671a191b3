"""A prepared workspace for the crash and storage-fault tests: built once, copied per test.

The template holds `workspace/` (a pipeline workspace where FIRST has been processed and SECOND
waits in the drop folder) and `remote/` (its DVC remote). Its params recover a dead owner's lock
at once (`dead_owner_grace_seconds: 0`), as a test cannot wait two minutes, and a git hook gives
`git commit` a write point of its own while it holds `.git/index.lock`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mainstem.commands import git
from mainstem.flow.batch import process_next_batch
from mainstem.flow.lineage import AUTHOR
from mainstem.flow.workspace import configure_remote, create_workspace
from mainstem.intake.submit import submit, submit_to_queue
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from tests.conftest import ROOT

FIRST = BatchSpec(1, first_id=1, rows=3, image_size=16)
SECOND = BatchSpec(2, first_id=3, rows=2, image_size=16)  # key 3 updates a row of FIRST
REJECTED = BatchSpec(2, first_id=3, rows=2, image_size=16, drop_column="grade")  # rejected whole
RUN_BATCH = (
    "import sys; from pathlib import Path; from mainstem.flow.batch import process_next_batch; "
    "process_next_batch(Path.cwd(), run_id=sys.argv[1])"
)
GIT_HOOK = """#!/bin/sh
[ -z "$MAINSTEM_CRASH_COUNTER" ] || exec "{python}" -c \\
  "from mainstem import crashpoints; crashpoints.reach('inside git commit')"
"""


def prepare(
    base: Path,
    workspace_source: Path | None = None,
    waiting: BatchSpec = SECOND,
    queued: bool = False,
) -> Path:
    """Build the template under `base`, with `waiting` as the waiting batch.

    `workspace_source` is a workspace to copy instead of creating one. With `queued`, the waiting
    batch is a queue entry of its own (`mainstem submit`'s layout) rather than the drop folder's
    root batch.
    """
    template = base / "template"
    if workspace_source is None:
        workspace = create_workspace(template / "workspace", ROOT)
    else:
        workspace = template / "workspace"
        shutil.copytree(workspace_source, workspace, symlinks=True)
        configure_remote(workspace)
    params_file = workspace / "params.yaml"
    text = params_file.read_text()
    assert "dead_owner_grace_seconds: 120" in text
    params_file.write_text(
        text.replace("dead_owner_grace_seconds: 120", "dead_owner_grace_seconds: 0")
    )
    git(["add", "params.yaml"], workspace)
    git([*AUTHOR, "commit", "--quiet", "-m", "tests: recover dead owners at once"], workspace)
    hook = workspace / ".git" / "hooks" / "prepare-commit-msg"
    hook.write_text(GIT_HOOK.format(python=sys.executable))
    hook.chmod(0o755)
    incoming = load_params(workspace).ingest.incoming_dir
    submit([make_batch(base / "deliveries" / "first", FIRST)], incoming, FIRST.name)
    process_next_batch(workspace)
    deliver = submit_to_queue if queued else submit
    deliver([make_batch(base / "deliveries" / "waiting", waiting)], incoming, waiting.name)
    return template


def copy_setup(source: Path, dest: Path) -> Path:
    """Copy a template (workspace and remote); point the copy's DVC remote at its own remote."""
    shutil.copytree(source, dest, symlinks=True)
    config = dest / "workspace" / ".dvc" / "config.local"
    config.write_text(config.read_text().replace(str(source), str(dest)))
    return dest / "workspace"


def run_batch(
    workspace: Path, run_id: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`process_next_batch` in a child that leads a new session, so its group can be killed."""
    return subprocess.Popen(
        [sys.executable, "-c", RUN_BATCH, run_id],
        cwd=workspace,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
