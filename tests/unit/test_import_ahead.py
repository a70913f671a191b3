"""Imports ahead: modules loaded on a thread while a block runs, or left alone if it ends first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mainstem.flow.import_ahead import imported_meanwhile


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("ahead_one", "ahead_two", "ahead_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "ahead_one.py").write_text("VALUE = 1\n", encoding="utf-8")
    (tmp_path / "ahead_two.py").write_text("VALUE = 2\n", encoding="utf-8")
    (tmp_path / "ahead_broken.py").write_text("raise RuntimeError('broken')\n", encoding="utf-8")
    return tmp_path


def test_the_modules_are_imported_by_the_end_of_the_block(module_dir: Path) -> None:
    with imported_meanwhile(["ahead_one", "ahead_broken", "ahead_two"]):
        pass
    # the broken one is skipped, and the one after it is still imported
    assert sys.modules["ahead_one"].VALUE == 1
    assert sys.modules["ahead_two"].VALUE == 2
    assert "ahead_broken" not in sys.modules


def test_a_block_that_ends_before_the_delay_imports_nothing(module_dir: Path) -> None:
    with imported_meanwhile(["ahead_one"], after=60.0):
        pass
    assert "ahead_one" not in sys.modules
