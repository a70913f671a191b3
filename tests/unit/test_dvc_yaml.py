"""dvc.yaml declares, for each stage, exactly the library modules the stage imports.

A missing module means DVC would not re-run the stage when that code changes; an extra one means
it re-runs for nothing. The imports are observed by importing each stage in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
_PROBE = (
    "import importlib, sys; importlib.import_module(sys.argv[1]); "
    "print('\\n'.join(sorted(m for m in sys.modules if m == 'mainstem' or "
    "m.startswith('mainstem.'))))"
)


def imported_modules(module: str) -> set[str]:
    """The mainstem source files loaded by importing `module` in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    paths = set()
    for name in completed.stdout.split():
        parts = name.split(".")
        paths.add("/".join(parts) + ("/__init__.py" if len(parts) == 1 else ".py"))
    return paths


def declared_modules(stage: dict[str, object]) -> set[str]:
    deps = stage.get("deps") or []
    assert isinstance(deps, list)
    return {str(dep) for dep in deps if str(dep).startswith("mainstem/")}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_exactly_the_library_modules_it_imports(name: str) -> None:
    stage = STAGES[name]
    assert stage["cmd"] == f"python -m stages.{name}"
    assert f"stages/{name}.py" in stage["deps"]
    assert declared_modules(stage) == imported_modules(f"stages.{name}")
