"""A stage's in-band fingerprint covers exactly the code dvc.yaml declares for it.

Each test works on a copy of the pipeline (dvc.yaml, stages/ and mainstem/) in tmp_path, so the
edits a test makes never touch the source tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mainstem.errors import MainstemError
from mainstem.fingerprint import code_files, fingerprint, pipeline_root
from tests.conftest import ROOT

SETTINGS: dict[str, object] = {"contract": "c0ffee"}


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    root = tmp_path / "pipeline"
    root.mkdir()
    shutil.copy2(ROOT / "dvc.yaml", root / "dvc.yaml")
    for folder in ("stages", "mainstem"):
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / folder, root / folder, ignore=ignore)
    return root


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_fingerprint_changes_when_a_file_in_a_declared_folder_changes(pipeline: Path) -> None:
    before = fingerprint("validate", SETTINGS, pipeline)
    append(pipeline / "mainstem" / "validation" / "columnar.py", "\nROW_GROUP_ROWS = 1000\n")
    assert fingerprint("validate", SETTINGS, pipeline) != before


def test_fingerprint_changes_when_a_module_is_added_to_a_declared_folder(pipeline: Path) -> None:
    before = fingerprint("merge", SETTINGS, pipeline)
    (pipeline / "mainstem" / "master" / "compaction.py").write_text('"""Later."""\n')
    assert fingerprint("merge", SETTINGS, pipeline) != before


def test_fingerprint_changes_when_a_declared_root_module_changes(pipeline: Path) -> None:
    before = fingerprint("merge", SETTINGS, pipeline)
    append(pipeline / "mainstem" / "durable.py", "\n# flushed differently\n")
    assert fingerprint("merge", SETTINGS, pipeline) != before


def test_fingerprint_ignores_code_outside_the_declared_deps(pipeline: Path) -> None:
    before = fingerprint("validate", SETTINGS, pipeline)
    append(pipeline / "mainstem" / "training" / "model.py", "\n# a new model\n")
    append(pipeline / "mainstem" / "master" / "merge.py", "\n# a faster merge\n")
    (pipeline / "mainstem" / "cli.py").unlink()
    assert fingerprint("validate", SETTINGS, pipeline) == before


def test_fingerprint_ignores_bytecode_beside_the_code(pipeline: Path) -> None:
    before = fingerprint("validate", SETTINGS, pipeline)
    cache = pipeline / "mainstem" / "validation" / "__pycache__"
    cache.mkdir()
    (cache / "columnar.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert fingerprint("validate", SETTINGS, pipeline) == before


def test_fingerprint_changes_with_the_settings(pipeline: Path) -> None:
    assert fingerprint("validate", SETTINGS, pipeline) != fingerprint(
        "validate", {"contract": "decade"}, pipeline
    )


def test_validate_fingerprint_covers_the_code_that_encodes_accepted_rows() -> None:
    files = code_files("validate")
    assert {"mainstem/validation/columnar.py", "mainstem/validation/store.py"} <= set(files)
    assert files == sorted(files)


def test_fingerprint_reads_the_declaration_beside_the_package_in_use() -> None:
    assert pipeline_root() == ROOT


def test_missing_declaration_is_a_clear_error(pipeline: Path) -> None:
    (pipeline / "dvc.yaml").unlink()
    with pytest.raises(MainstemError, match=r"dvc\.yaml does not exist"):
        fingerprint("validate", SETTINGS, pipeline)


def test_unknown_stage_is_a_clear_error(pipeline: Path) -> None:
    with pytest.raises(MainstemError, match="declares no stage publish"):
        fingerprint("publish", SETTINGS, pipeline)


def test_missing_declared_code_is_a_clear_error(pipeline: Path) -> None:
    shutil.rmtree(pipeline / "mainstem" / "intake")
    with pytest.raises(MainstemError, match="depends on mainstem/intake"):
        fingerprint("merge", SETTINGS, pipeline)
