"""Fingerprints that say when derived data must be rebuilt.

In: the modules whose code shapes an output, and the settings that do. Out: one sha256 hex string.
A stage stores the fingerprint beside its output; a different fingerprint on the next run means the
code, contract or settings changed and the output is rebuilt from scratch rather than extended.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path


def module_sources(names: list[str]) -> list[Path]:
    """The source files of the named modules."""
    paths = []
    for name in names:
        module = importlib.import_module(name)
        if module.__file__ is None:
            raise ValueError(f"module {name} has no source file")
        paths.append(Path(module.__file__))
    return paths


def fingerprint(modules: list[str], settings: dict[str, object]) -> str:
    digest = hashlib.sha256()
    for path in module_sources(sorted(modules)):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()
