"""The `workspace` fixture's copy is configured as `configure_remote` would configure it.

The fixture copies a template whose remote is already set, then renames the remote folder in
`.dvc/config.local` instead of running `dvc remote add` once per test.
"""

from __future__ import annotations

from pathlib import Path

from mainstem.commands import dvc
from mainstem.flow.workspace import configure_remote


def test_a_workspace_copy_has_the_remote_config_that_configure_remote_writes(
    workspace: Path,
) -> None:
    config = workspace / ".dvc" / "config.local"
    given = config.read_bytes()
    configure_remote(workspace)
    assert config.read_bytes() == given


def test_a_workspace_copy_pushes_to_the_remote_beside_it(workspace: Path) -> None:
    (workspace / "notes.txt").write_text("kept\n")
    dvc(["add", "--quiet", "notes.txt"], workspace)
    dvc(["push", "--quiet"], workspace)
    pushed = [p.read_bytes() for p in (workspace.parent / "remote").rglob("*") if p.is_file()]
    assert b"kept\n" in pushed
