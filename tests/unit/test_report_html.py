"""The HTML batch report that validate writes beside report.json: content, safety, determinism."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

from PIL import Image

from mainstem.validation.layout import REPORT_HTML, read_report
from mainstem.validation.report import MAX_REJECTED_IMAGES, make_thumbnail
from tests.unit.raw_batches import (
    csv_bytes,
    png,
    row,
    stored_file,
    v1,
    validate_all,
    write_raw_batch,
)

HOSTILE = [
    row(1),
    row(2, supplier="<script>alert(1)</script>", image_file="b.png"),
    row(3, supplier='=HYPERLINK("http://example.invalid/x")', image_file="c.png"),
    row(4, weight_g=-5, image_file="d.png"),
    row(5, supplier="x" * 3000, image_file="e.png"),
    row(6, supplier="north\u202egnp.exe", image_file="f.png"),
]
HOSTILE_FILES = {
    "batch.csv": csv_bytes(HOSTILE),
    "a.png": png(),
    "b.png": png((8, 8)),  # decodable, refused as too small: shown
    "c.png": png()[:60],  # truncated: a placeholder
    "d.png": b"",  # empty: a placeholder
    "e.png": png((40, 30), (200, 30, 30)),
    "f.png": png(),
}


def page(tmp_path: Path, files: dict[str, bytes], earlier: int = 0) -> str:
    """Validate `earlier` plain batches then one made of `files`; the last batch's page."""
    raws = [
        write_raw_batch(
            tmp_path / "raw" / f"e{n}",
            {"t.csv": csv_bytes([row(100 + n)]), "a.png": png()},
            batch_id=f"e{n}",
            sequence=n,
        )
        for n in range(1, earlier + 1)
    ]
    raws.append(write_raw_batch(tmp_path / "raw" / "b", files, batch_id="b", sequence=earlier + 1))
    validate_all(raws, tmp_path / "validated", v1())
    return stored_file(tmp_path / "validated", "b", REPORT_HTML).read_text(encoding="utf-8")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_page_shows_contract_counts_and_each_failure_case(tmp_path: Path) -> None:
    html = page(tmp_path, HOSTILE_FILES)
    text = text_of(html)
    report = read_report(tmp_path / "validated", "b")
    assert report is not None
    assert "produce/v1" in text
    assert f"{report['rows_accepted']} rows accepted" in text
    assert f"{report['rows_rejected']} rows rejected" in text
    assert (report["rows_accepted"], report["rows_rejected"]) == (1, 5)
    assert "weight_g · in_range(1.0, 5000.0)" in text
    assert "-5.0 t.csv" not in text
    assert "-5.0" in text  # a number is shown as it is
    assert "b.png: 8x8 is below the minimum 16x16" in text


def test_delivered_values_are_escaped_cut_and_defused(tmp_path: Path) -> None:
    html = page(tmp_path, HOSTILE_FILES)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#x27;=HYPERLINK(" in html  # marked so a spreadsheet shows it as text
    assert "x" * 200 not in html
    assert "\u202e" not in html
    assert "\\u202e" in html
    # Nothing is fetched from anywhere: every image is inline.
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources
    assert all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert "default-src 'none'" in html


def test_images_show_as_thumbnails_or_a_placeholder_with_the_reason(tmp_path: Path) -> None:
    html = page(tmp_path, HOSTILE_FILES)
    pictures = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    # a.png, e.png and f.png accepted; b.png refused but decodable; c.png and d.png are not.
    assert len(pictures) == 4
    for data in pictures:
        with Image.open(io.BytesIO(base64.b64decode(data))) as thumb:
            assert max(thumb.size) <= 64
    assert html.count("not shown</div>") == 2
    assert "the image file is empty (0 bytes)" in html
    assert "the image file is truncated" in html


def test_a_capped_number_of_images_is_shown_and_the_rest_counted(tmp_path: Path) -> None:
    count = MAX_REJECTED_IMAGES + 5
    rows = [row(n, image_file=f"i{n}.png") for n in range(1, count + 1)]
    files = {"t.csv": csv_bytes(rows)} | {f"i{n}.png": b"" for n in range(1, count + 1)}
    html = page(tmp_path, files)
    assert html.count("<figure>") == MAX_REJECTED_IMAGES
    assert "5 more rejected image(s) not shown" in html


def test_the_page_places_the_batch_after_the_earlier_ones(tmp_path: Path) -> None:
    text = text_of(page(tmp_path, HOSTILE_FILES, earlier=2))
    assert "Batch number 3 in delivery order, after 2 earlier batch(es)" in text
    assert "e1" in text
    assert "e2" in text
    assert "Accepted rows delivered so far, this batch included: 3" in text


def test_a_structurally_rejected_batch_says_why(tmp_path: Path) -> None:
    files = {"t.csv": csv_bytes([row(1)], columns=["item_id", "supplier"])}
    text = text_of(page(tmp_path, files))
    assert "Why the whole batch was rejected" in text
    assert "missing column(s)" in text
    assert "No image was checked (the batch was rejected before its images were checked)" in text


def test_the_same_batches_give_the_same_bytes_incrementally_and_rebuilt(tmp_path: Path) -> None:
    first = page(tmp_path / "a", HOSTILE_FILES, earlier=1)
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "raw", tmp_path / "b" / "raw")
    raws = sorted((tmp_path / "b" / "raw").iterdir())
    from mainstem.intake.ingest import read_raw_batch

    batches = sorted((read_raw_batch(r) for r in raws), key=lambda b: b.sequence)
    validated = tmp_path / "b" / "validated"
    validate_all(batches[:1], validated, v1())  # one batch now, one later
    validate_all(batches, validated, v1())
    assert stored_file(validated, "b", REPORT_HTML).read_text(encoding="utf-8") == first


def test_a_declared_bomb_is_never_decoded_for_a_thumbnail() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buffer, format="PNG")
    assert make_thumbnail(buffer.getvalue(), ("PNG",), max_pixels=100 * 100) is None
    assert make_thumbnail(buffer.getvalue(), ("PNG",), max_pixels=200 * 200) is not None
    assert make_thumbnail(buffer.getvalue(), ("JPEG",), max_pixels=200 * 200) is None
