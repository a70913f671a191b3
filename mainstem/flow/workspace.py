"""Pipeline workspaces: a git + DVC repository of their own where batches are processed.

In: the mainstem source tree and a destination folder. Out: a repository holding a copy of the
pipeline (dvc.yaml, params.yaml, contracts, stages, dags and the library the stages import), with
its own git history for lineage commits and a DVC remote configured from params.yaml or the
environment. The source tree's own history is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mainstem.commands import dvc, git
from mainstem.errors import MainstemError
from mainstem.flow.lineage import AUTHOR
from mainstem.params import load_params

PIPELINE_FILES = (
    "params.yaml",
    "dvc.yaml",
    "dvc.lock",
    ".dvcignore",
    ".gitignore",
    "contracts",
    "stages",
    "dags",
    "mainstem",
    "data/claimed_batch.json",
    "models/train_request.json",
    "models/drift_reference.json",
)
REMOTE_URL_ENV = "MAINSTEM_REMOTE_URL"
REMOTE_ENDPOINT_ENV = "MAINSTEM_REMOTE_ENDPOINTURL"


def source_root() -> Path:
    """The mainstem source tree this library was loaded from."""
    return Path(__file__).resolve().parents[2]


def _copy(source: Path, dest: Path) -> None:
    for name in PIPELINE_FILES:
        origin = source / name
        if not origin.exists():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)


def configure_remote(root: Path) -> str:
    """Point the workspace's default DVC remote at params.yaml's `remote`, or the environment.

    The settings go to `.dvc/config.local`, which git never sees, so a credential or a
    machine-specific path cannot reach the repository.
    """
    params = load_params(root)
    url = os.environ.get(REMOTE_URL_ENV) or params.remote.url
    endpoint = os.environ.get(REMOTE_ENDPOINT_ENV) or params.remote.endpointurl
    if "://" not in url:
        url = str((root / url).resolve())
        Path(url).mkdir(parents=True, exist_ok=True)
    name = params.remote.name
    dvc(["remote", "add", "--local", "--force", "--default", name, url], root)
    if endpoint:
        dvc(["remote", "modify", "--local", name, "endpointurl", endpoint], root)
    return url


def set_param(text: str, section: str, key: str, value: str) -> str:
    """params.yaml's text with `section.key` set to the string `value`, its comment kept."""
    lines = text.splitlines(keepends=True)
    inside = False
    for index, line in enumerate(lines):
        if not line.startswith((" ", "#", "\n")) and line.strip():
            inside = line.rstrip() == f"{section}:"
            continue
        match = re.match(rf"^(\s+{re.escape(key)}:\s*)([^#\n]*?)(\s*#.*)?$", line.rstrip("\n"))
        if inside and match:
            comment = match.group(3) or ""
            lines[index] = f"{match.group(1)}{json.dumps(value)}{comment}\n"
            return "".join(lines)
    raise MainstemError(f"params.yaml has no '{section}.{key}' to set")


@dataclass(frozen=True)
class WorkspaceChoices:
    """What `mainstem init` may choose for a new workspace; None keeps params.yaml's value."""

    dataset: str | None = None
    remote: str | None = None


def _apply(dest: Path, choices: WorkspaceChoices) -> None:
    path = dest / "params.yaml"
    text = path.read_text(encoding="utf-8")
    if choices.dataset is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", choices.dataset):
            raise MainstemError(
                f"dataset name {choices.dataset!r} must be letters, digits, - and _ only"
            )
        text = set_param(text, "validate", "dataset", choices.dataset)
        text = set_param(text, "train", "experiment", f"mainstem-{choices.dataset}")
        text = set_param(text, "train", "model_name", f"{choices.dataset}-model")
    if choices.remote is not None:
        text = set_param(text, "remote", "url", choices.remote)
    path.write_text(text, encoding="utf-8")


def create_workspace(
    dest: Path, source: Path | None = None, choices: WorkspaceChoices | None = None
) -> Path:
    """A fresh workspace at `dest` (which must not exist yet), with its first commit made.

    Without a contract for the chosen dataset yet, nothing is run: the first commit holds the
    pipeline only, and the first `mainstem process` after `mainstem contract infer` builds all.
    """
    source = source or source_root()
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise MainstemError(f"{dest} already exists and is not empty; choose another folder")
    dest.mkdir(parents=True, exist_ok=True)
    _copy(source, dest)
    _apply(dest, choices or WorkspaceChoices())
    git(["init", "--quiet", "--initial-branch", "main"], dest)
    dvc(["init", "--quiet"], dest)
    dvc(["config", "core.analytics", "false"], dest)
    dvc(["config", "core.check_update", "false"], dest)
    configure_remote(dest)
    if load_params(dest).validate.contract_path.exists():
        dvc(["repro", "--quiet"], dest)
        # the first commit is a snapshot like every later one: its outputs can be pulled
        dvc(["push", "--quiet"], dest)
        message = "workspace: pipeline and empty master"
    else:
        message = "workspace: pipeline, waiting for its contract"
    git(["add", "--all"], dest)
    git([*AUTHOR, "commit", "--quiet", "-m", message], dest)
    return dest


def refresh_lock(source: Path) -> None:
    """Regenerate `source/dvc.lock` from a pipeline run on no data in a scratch workspace."""
    scratch = Path(tempfile.mkdtemp(prefix="mainstem-lock-"))
    try:
        workspace = create_workspace(scratch / "workspace", source)
        shutil.copy2(workspace / "dvc.lock", source / "dvc.lock")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=refresh_lock.__doc__)
    parser.add_argument("--refresh-lock", metavar="SOURCE", required=True)
    refresh_lock(Path(parser.parse_args().refresh_lock).resolve())
