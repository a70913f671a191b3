"""The HTML batch report as a browser shows it: Debian's headless Chromium renders a real one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from mainstem.validation.layout import REPORT_HTML, read_report
from tests.unit.raw_batches import (
    csv_bytes,
    png,
    row,
    stored_file,
    v1,
    validate_all,
    write_raw_batch,
)

pytestmark = pytest.mark.e2e
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip("no headless browser installed (apt-get install chromium); report not rendered")
    return found


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A validated batch with good and bad rows and images; its report.html."""
    base = tmp_path_factory.mktemp("report")
    rows = [row(n, image_file=f"{n}.png") for n in range(1, 9)]
    rows[2]["weight_g"] = -5
    rows[4]["supplier"] = "<script>document.title='pwned'</script>"
    files = {"batch.csv": csv_bytes(rows)} | {f"{n}.png": png() for n in range(1, 9)}
    files["7.png"] = b"not an image"
    raw = write_raw_batch(base / "raw" / "b1", files, batch_id="b1")
    validate_all([raw], base / "validated", v1())
    return stored_file(base / "validated", "b1", REPORT_HTML)


def run_browser(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_browser_shows_the_counts(browser: str, report_page: Path, tmp_path: Path) -> None:
    report = read_report(report_page.parent.parent, "b1")
    assert report is not None
    assert (report["rows_accepted"], report["rows_rejected"]) == (5, 3)
    dom = run_browser(browser, tmp_path, "--dump-dom", report_page.as_uri()).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "5 rows accepted" in text
    assert "3 rows rejected" in text
    assert "7 images accepted" in text
    assert "1 images rejected" in text
    assert "<title>Batch b1</title>" in dom  # the delivered <script> never ran


def test_the_browser_renders_a_real_picture(
    browser: str, report_page: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    run_browser(
        browser, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", report_page.as_uri()
    )
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    # A blank or error page has a handful of colours; text, badges and photos have thousands.
    assert len(colours) > 500
    counts = {colour: n for n, colour in colours}
    assert counts.get((46, 125, 50), 0) > 100  # the green "accepted" badge is drawn
