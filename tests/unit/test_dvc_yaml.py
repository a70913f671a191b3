"""dvc.yaml declares, for each stage, the code that can run in it.

A module a stage can run but dvc.yaml does not cover means DVC would not re-run the stage when that
code changes, and the stage's in-band fingerprint (read from the same declaration) would not see
it either. The data stages declare whole sub-package folders; train declares exactly the files it
reaches, as a retraining is too costly to repeat for a change to code it never runs.

The code a stage reaches is found statically: every import in the stage module and, transitively,
in each mainstem module it reaches, imports inside function bodies included (only imports under
`if TYPE_CHECKING:` are left out, as they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
CODE_ROOTS = ("mainstem", "stages")
PRECISE = {"train"}


def module_file(root: Path, name: str) -> Path | None:
    """The source file of module `name` under `root`; None if it is not a module there."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_name(base.name + ".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The names of the modules a module's code imports, wherever the import statement is."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        self.names.add(base)
        # `from package import name` imports the submodule `name` when there is one
        self.names.update(f"{base}.{alias.name}" for alias in node.names)

    def visit_Call(self, node: ast.Call) -> None:
        called = node.func
        name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", None)
        first = node.args[0] if node.args else None
        if name == "import_module" and isinstance(first, ast.Constant):
            self.names.add(str(first.value))
        self.generic_visit(node)


def imports_of(root: Path, name: str) -> set[str]:
    """Modules under `root` that running module `name` can import, with their parent packages."""
    path = module_file(root, name)
    assert path is not None, f"{name} is not a module under {root}"
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    visitor = _Imports(package)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    found = set()
    for imported in visitor.names:
        parts = imported.split(".")
        if parts[0] not in CODE_ROOTS:
            continue
        found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {module for module in found if module_file(root, module) is not None}


def reached_files(root: Path, start: str) -> set[str]:
    """Every module file, relative to `root`, that running module `start` can execute."""
    todo = [".".join(start.split(".")[:end]) for end in range(1, len(start.split(".")) + 1)]
    seen: dict[str, str] = {}
    while todo:
        name = todo.pop()
        path = module_file(root, name)
        if name not in seen and path is not None:
            seen[name] = path.relative_to(root).as_posix()
            todo.extend(imports_of(root, name) - set(seen))
    return set(seen.values())


def code_deps(stage: dict[str, object]) -> list[str]:
    deps = stage.get("deps") or []
    assert isinstance(deps, list)
    return [str(dep) for dep in deps if str(dep).split("/")[0] in CODE_ROOTS]


def covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def write_module(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_reach_follows_imports_inside_function_bodies(tmp_path: Path) -> None:
    write_module(tmp_path, "stages/__init__.py", "")
    write_module(tmp_path, "stages/job.py", "def main():\n    from mainstem.deep import run\n")
    write_module(tmp_path, "mainstem/__init__.py", "")
    write_module(tmp_path, "mainstem/deep.py", "from . import deeper\n")
    write_module(tmp_path, "mainstem/typed.py", "")
    write_module(tmp_path, "mainstem/unused.py", "")
    write_module(
        tmp_path,
        "mainstem/deeper.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mainstem import typed\n"
        "def later():\n    import importlib\n    return importlib.import_module('mainstem.late')\n",
    )
    write_module(tmp_path, "mainstem/late.py", "")

    assert reached_files(tmp_path, "stages.job") == {
        "stages/__init__.py",
        "stages/job.py",
        "mainstem/__init__.py",
        "mainstem/deep.py",
        "mainstem/deeper.py",
        "mainstem/late.py",
    }


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_runs_its_own_module(name: str) -> None:
    # The OpenLineage runner runs `stages.<name>.main` and only reports on it: it is not a dep.
    stage = STAGES[name]
    assert stage["cmd"] == f"python -m mainstem.openlineage.stage_run {name}"
    assert f"stages/{name}.py" in stage["deps"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_every_module_it_can_run(name: str) -> None:
    deps = code_deps(STAGES[name])
    missing = sorted(f for f in reached_files(ROOT, f"stages.{name}") if not covered(f, deps))
    assert missing == []


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_code_deps_exist(name: str) -> None:
    assert [dep for dep in code_deps(STAGES[name]) if not (ROOT / dep).exists()] == []


@pytest.mark.parametrize("name", sorted(PRECISE))
def test_precise_stage_declares_only_files_it_reaches(name: str) -> None:
    deps = code_deps(STAGES[name])
    assert [dep for dep in deps if not (ROOT / dep).is_file()] == []  # no folders
    assert sorted(set(deps) - reached_files(ROOT, f"stages.{name}")) == []


@pytest.mark.parametrize("name", sorted(set(STAGES) - PRECISE))
def test_data_stage_declares_sub_package_folders(name: str) -> None:
    folders = [dep for dep in code_deps(STAGES[name]) if (ROOT / dep).is_dir()]
    files = [dep for dep in code_deps(STAGES[name]) if (ROOT / dep).is_file()]
    assert folders, "a data stage depends on the sub-package(s) that shape its output"
    nested = [f for f in files if f.count("/") > 1]
    assert nested == [], "a module inside a sub-package is covered by the sub-package's folder"
