"""Imports go one way, down the flow: intake → validation → master → training → flow → local → cli.

Every import a module makes is read from its source, imports inside functions included, so a
late import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIBRARY = ROOT / "mainstem"
ORDER = ["intake", "validation", "master", "training", "openlineage", "flow", "local"]


def layer(module: str) -> int:
    """0 for the shared root modules, then one layer per sub-package in flow order; cli last."""
    parts = module.split(".")
    if parts[1:] == ["cli"]:
        return len(ORDER) + 1
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in ORDER):
        return ORDER.index(parts[1]) + 1
    return 0


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported(path: Path) -> set[str]:
    """Every mainstem module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mainstem":
                found.update(f"mainstem.{alias.name}" for alias in node.names)
            elif node.module.startswith("mainstem."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mainstem."))
    return found


MODULES = sorted(LIBRARY.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_a_module_imports_only_from_its_own_layer_or_below(path: Path) -> None:
    source = module_name(path)
    upward = sorted(m for m in imported(path) if layer(m) > layer(source))
    assert upward == [], f"{source} (layer {layer(source)}) imports from a later step: {upward}"


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    late = tmp_path / "late.py"
    late.write_text("def f():\n    from mainstem.local.demo import run_demo\n")
    assert imported(late) == {"mainstem.local.demo"}
    assert layer("mainstem.local.demo") > layer("mainstem.intake.lock")


def test_every_module_sits_in_a_step_package_or_is_shared() -> None:
    packages = {p.parent.name for p in MODULES if p.parent != LIBRARY}
    assert packages == set(ORDER)
