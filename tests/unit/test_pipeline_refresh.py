"""Rebuilding the pipeline page after a step never fails the step."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mainstem.flow.pipeline_history import refresh_pipeline_page


def test_a_page_that_cannot_be_built_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert refresh_pipeline_page(tmp_path / "not-a-workspace") is None
    assert "the pipeline page was not rebuilt" in caplog.text
