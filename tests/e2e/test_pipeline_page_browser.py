"""The pipeline page as a browser shows it: one built from records, and one a workspace built."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from mainstem.flow.batch import process_next_batch
from mainstem.flow.pipeline_history import PAGE
from mainstem.flow.pipeline_page import BatchPoint, PipelineHistory, TrainingPoint, render_page
from mainstem.local.samples import BatchSpec
from mainstem.params import load_params
from tests.conftest import Deliver
from tests.e2e.test_report_browser import browser, run_browser

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, shared with the batch report's test
HOSTILE = "<script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def pipeline_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    batches = tuple(
        BatchPoint(
            number=n,
            batch_id=f"{n:016x}",
            name=HOSTILE if n == 3 else f"batch-{n}",
            status="rejected" if n == 3 else "accepted",
            rows_in=100,
            rows_accepted=0 if n == 3 else 95,
            rows_rejected=100 if n == 3 else 5,
            master_rows=95 * (n - (n > 3)),
            contract="produce/v1" if n < 5 else "produce/v2",
            reasons=((HOSTILE if n == 3 else "weight_g · in_range", 100 if n == 3 else 5),),
        )
        for n in range(1, 9)
    )
    trainings = (
        TrainingPoint(2, "1", "f1_macro", 0.71, 190, True, "1"),
        TrainingPoint(6, "2", "f1_macro", 0.69, 475, False, "1"),
    )
    history = PipelineHistory("/w", batches, trainings, 200, "params.yaml", {})
    page = tmp_path_factory.mktemp("pipeline") / "pipeline.html"
    page.write_bytes(render_page(history))
    return page


def test_the_browser_shows_the_numbers(browser: str, pipeline_page: Path, tmp_path: Path) -> None:
    dom = run_browser(browser, tmp_path, "--dump-dom", pipeline_page.as_uri()).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "8 batches" in text
    assert "1 rejected" in text
    assert "665 master rows" in text
    assert "390 retrain at" in text  # version 1 (190 rows) stays production; 190 + 200
    assert "v1 production" in text
    assert "<title>Pipeline</title>" in dom  # the delivered <script> never ran
    assert dom.count("<svg") == 5


def test_the_browser_draws_the_charts(browser: str, pipeline_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "pipeline.png"
    run_browser(
        browser, tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", pipeline_page.as_uri()
    )
    with Image.open(shot) as image:
        counts = {colour: n for n, colour in image.convert("RGB").getcolors(1 << 20) or []}
    assert counts.get((102, 187, 106), 0) > 1000  # the accepted rows' green area is drawn
    assert counts.get((46, 125, 50), 0) > 500  # the production version's bar


def test_the_browser_shows_a_workspace_page_that_agrees_with_its_metrics(
    browser: str, workspace: Path, deliver: Deliver, tmp_path: Path
) -> None:
    """The page the flow itself rebuilt after each batch, as a person opens it."""
    deliver(BatchSpec(1, first_id=1, rows=40, bad_rows=3, image_size=16))
    process_next_batch(workspace)
    deliver(BatchSpec(2, first_id=41, rows=10, image_size=16, drop_column="grade"))
    process_next_batch(workspace)
    master = json.loads(load_params(workspace).merge.metrics_file.read_text())

    page = workspace / PAGE
    dom = run_browser(browser, tmp_path, "--dump-dom", page.as_uri()).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "2 batches" in text
    assert "1 rejected" in text
    assert f"{master['master_rows']} master rows" in text
    assert dom.count("<svg") >= 3
