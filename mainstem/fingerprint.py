"""Fingerprints that say when derived data must be rebuilt.

In: a stage's name and the settings that shape its output. Out: one sha256 hex string over the
stage's code, as `dvc.yaml` declares it, and the settings. A stage stores the fingerprint beside its
output; a different fingerprint on the next run means the code, contract or settings changed and
the output is rebuilt from scratch rather than extended.

The code is read from the same declaration DVC uses to decide when to re-run the stage: every deps
entry of the stage under `mainstem/` or `stages/`, a file or a folder, whose `.py` files are all
hashed. So the stage cannot re-run for a code change that its fingerprint misses. The `dvc.yaml`
used is the one beside the `mainstem` package in use: a workspace's own copy, or the source tree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from mainstem.errors import MainstemError

CODE_ROOTS = ("mainstem", "stages")


def pipeline_root() -> Path:
    """The folder holding the `mainstem` package in use, where its `dvc.yaml` is."""
    return Path(__file__).resolve().parents[1]


def code_deps(stage: str, root: Path | None = None) -> list[str]:
    """The deps of `stage` in `root/dvc.yaml` that are code: files or folders of the library."""
    root = root or pipeline_root()
    declaration = root / "dvc.yaml"
    try:
        stages = yaml.safe_load(declaration.read_text(encoding="utf-8"))["stages"]
    except FileNotFoundError:
        raise MainstemError(
            f"{declaration} does not exist; the fingerprint of stage {stage} is read from the "
            "dvc.yaml beside the mainstem package, so run the stage from a workspace or the "
            "source tree"
        ) from None
    except (OSError, yaml.YAMLError, TypeError, KeyError) as error:
        raise MainstemError(f"could not read the stages of {declaration}: {error}") from None
    if not isinstance(stages, dict) or stage not in stages:
        raise MainstemError(f"{declaration} declares no stage {stage}")
    deps = [Path(str(dep)) for dep in stages[stage].get("deps") or []]
    return [dep.as_posix() for dep in deps if dep.parts and dep.parts[0] in CODE_ROOTS]


def code_files(stage: str, root: Path | None = None) -> list[str]:
    """Every `.py` file the code deps of `stage` cover, as sorted paths relative to `root`."""
    root = root or pipeline_root()
    found: set[str] = set()
    for dep in code_deps(stage, root):
        path = root / dep
        if path.is_dir():
            found.update(p.relative_to(root).as_posix() for p in path.rglob("*.py") if p.is_file())
        elif path.is_file():
            found.add(dep)
        else:
            raise MainstemError(f"stage {stage} depends on {dep}, which is not in {root}")
    return sorted(found)


def fingerprint(stage: str, settings: dict[str, object], root: Path | None = None) -> str:
    """The fingerprint of `stage`'s declared code (path and bytes of each file) and `settings`."""
    root = root or pipeline_root()
    digest = hashlib.sha256()
    for relative in code_files(stage, root):
        data = (root / relative).read_bytes()
        # path and length frame each file, so moving bytes between files changes the result
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()
