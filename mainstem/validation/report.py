"""The HTML report of one validated batch: a page a person opens to see what was refused and why.

In: the batch's report (the dict stored as `report.json`), thumbnails of some of its images, and
the reports of the batches delivered before it. Out: the bytes of one self-contained HTML page:
inline CSS, images as `data:` URIs, no script, no external reference (a Content-Security-Policy
says so to the browser too), so it opens offline, from a DVC cache or as an e-mail attachment.
Every value that came from a delivery is escaped, cut to a readable length, stripped of control
and bidi characters, and marked with a leading `'` when a spreadsheet would run it as a formula.
The same inputs give the same bytes (no clock, stable order), as the page is a DVC-tracked output.

The validate stage runs before merge and never reads the master, so the page places the batch in
the history of deliveries (earlier batches and their outcomes, accepted rows so far) rather than
claiming master row counts it cannot know; those are in `metrics/master.json` and the lineage
commit once merge has run.
"""

from __future__ import annotations

import base64
import html
import io
import re
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

if TYPE_CHECKING:
    from mainstem.validation.batch import BatchResult
    from mainstem.validation.contract import Contract

THUMBNAIL_PX = 64
MAX_REJECTED_IMAGES = 24
MAX_ACCEPTED_IMAGES = 12
MAX_CASES_PER_CHECK = 25
MAX_REASONS = 50
MAX_HISTORY = 20
MAX_CELL_CHARS = 160
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2327;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 6px}
.status{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.accepted{background:#2e7d32}.rejected{background:#c62828}
.counts{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.count{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.count b{display:block;font-size:22px}
table{border-collapse:collapse;margin:4px 0 8px;width:100%}
th,td{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td code{white-space:pre-wrap;word-break:break-all}
tr.this td{background:#fff8e1;font-weight:600}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:150px;border:1px solid #e0e0e0;border-radius:6px;padding:6px;font-size:12px}
figure img,.noimage{width:64px;height:64px;display:block;margin:0 auto 4px}
.noimage{background:#eee;color:#777;font-size:10px;text-align:center;line-height:64px}
figcaption{word-break:break-all}.muted{color:#666}
"""


@dataclass(frozen=True)
class Thumbnail:
    """One image of the batch as the page shows it; `image` is None when it cannot be shown."""

    column: str
    path: str
    status: str
    reason: str
    rows: int
    image: bytes | None


def make_thumbnail(data: bytes, formats: Sequence[str], max_pixels: int) -> bytes | None:
    """A small JPEG of an image, or None when it cannot be decoded safely.

    Only the contract's formats are parsed, and an image declaring more than `max_pixels` is not
    decoded at all, so a refused decompression bomb stays refused here too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats)) as im:
                if im.width * im.height > max_pixels:
                    return None
                im.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
                small = ImageOps.exif_transpose(im.convert("RGB"))
                small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                buffer = io.BytesIO()
                small.save(buffer, format="JPEG", quality=80)
                return buffer.getvalue()
    except Exception:  # any decoder failure: the page shows the reason instead of a picture
        return None


def pick_images(images: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rejected and the accepted images the page shows: the first ones of each, by path."""
    ordered = sorted(images, key=lambda i: (str(i["column"]), str(i["path"])))
    rejected = [i for i in ordered if i["status"] == "rejected"][:MAX_REJECTED_IMAGES]
    accepted = [i for i in ordered if i["status"] == "accepted"][:MAX_ACCEPTED_IMAGES]
    return rejected, accepted


def batch_thumbnails(
    result: BatchResult, contract: Contract, read: Callable[[str], bytes | None]
) -> list[Thumbnail]:
    """Thumbnails of the images the page shows; `read` gives a delivered file's bytes, or None.

    Accepted images are drawn from their canonical encoding. A rejected image is decoded again
    only when the decoder had read its header (it was refused for its size or frames); one the
    decoder refused (corrupt, truncated, a bomb, another format) is never opened a second time.
    """
    found = {(image.column, image.path): image for image in result.images}
    rejected, accepted = pick_images([image.to_json() for image in result.images])
    thumbnails = []
    for shown in [*rejected, *accepted]:
        image = found[(shown["column"], shown["path"])]
        rule = contract.image_rule(image.column)
        outcome = image.outcome
        picture = None
        if rule is not None and outcome.ok and outcome.data is not None:
            picture = make_thumbnail(outcome.data, (rule.format,), rule.max_pixels)
            reason = f"accepted; delivered as {outcome.source}"
            reason += f"; {outcome.note}" if outcome.note else ""
        else:
            if rule is not None and outcome.source is not None:
                data = read(image.path)
                picture = make_thumbnail(data, rule.formats, rule.max_pixels) if data else None
            reason = str(outcome.reason)
        status = "accepted" if outcome.ok else "rejected"
        thumbnails.append(Thumbnail(image.column, image.path, status, reason, image.rows, picture))
    return thumbnails


def cell(value: object, limit: int = MAX_CELL_CHARS) -> str:
    """A delivered value as safe HTML text: no controls, cut to `limit`, formulas defused."""
    text = "" if value is None else str(value)
    text = "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf", "Cs") else f"\\u{ord(ch):04x}"
        for ch in text
    )
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} chars)"
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        text = "'" + text
    return html.escape(text, quote=True)


def _count(label: str, value: object) -> str:
    return f'<div class="count"><b>{cell(value)}</b>{html.escape(label)}</div>'


def _reasons(report: dict[str, Any]) -> list[str]:
    reasons = [str(r) for r in report.get("reasons") or []]
    if not reasons:
        return []
    items = "".join(f"<li>{cell(r, 400)}</li>" for r in reasons[:MAX_REASONS])
    more = len(reasons) - MAX_REASONS
    tail = f'<p class="muted">and {more} more, listed in report.json</p>' if more > 0 else ""
    return ["<h2>Why the whole batch was rejected</h2>", f"<ul>{items}</ul>{tail}"]


def _failures(report: dict[str, Any]) -> list[str]:
    by_check = report.get("failures_by_check") or []
    out = ["<h2>Failure cases by check</h2>"]
    if not by_check:
        return [*out, '<p class="muted">No row failed a check.</p>']
    cases: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for case in report.get("failure_cases") or []:
        cases.setdefault((str(case["column"]), str(case["check"])), []).append(case)
    summary = "".join(
        f"<tr><td>{cell(c['column'] or '(row)')}</td><td>{cell(c['check'])}</td>"
        f"<td>{int(c['rows'])}</td></tr>"
        for c in by_check
    )
    out.append(f"<table><tr><th>column</th><th>check</th><th>cases</th></tr>{summary}</table>")
    for entry in by_check:
        key = (str(entry["column"]), str(entry["check"]))
        shown = cases.get(key, [])[:MAX_CASES_PER_CHECK]
        rows = "".join(
            f"<tr><td>{cell(c['column'])}</td><td>{cell(c['check'])}</td>"
            f"<td><code>{cell(c['value'])}</code></td><td>{cell(c['row'])}</td></tr>"
            for c in shown
        )
        more = int(entry["rows"]) - len(shown)
        tail = (
            f'<p class="muted">and {more} more; every rejected row and its reasons are in '
            "rejected.parquet</p>"
            if more > 0
            else ""
        )
        out.append(
            f"<h3>{cell(entry['column'] or '(row)')} · {cell(entry['check'])}</h3>"
            "<table><tr><th>column</th><th>check</th><th>value</th><th>row</th></tr>"
            f"{rows}</table>{tail}"
        )
    return out


def _figure(thumb: Thumbnail) -> str:
    if thumb.image is not None:
        data = base64.b64encode(thumb.image).decode("ascii")
        picture = f'<img alt="{cell(thumb.path)}" src="data:image/jpeg;base64,{data}">'
    else:
        picture = '<div class="noimage">not shown</div>'
    uses = f"{thumb.rows} row{'s' if thumb.rows != 1 else ''}"
    return (
        f'<figure>{picture}<figcaption><span class="status {thumb.status}">{thumb.status}</span> '
        f"<code>{cell(thumb.path, 80)}</code><br>{cell(thumb.reason, 300)}"
        f'<br><span class="muted">{cell(thumb.column)}, {uses}</span></figcaption></figure>'
    )


def _images(report: dict[str, Any], thumbnails: list[Thumbnail]) -> list[str]:
    out = ["<h2>Images</h2>"]
    images = report.get("images") or []
    if not images:
        why = (
            " (the batch was rejected before its images were checked)" if report["reasons"] else ""
        )
        return [*out, f'<p class="muted">No image was checked{why}.</p>']
    for status in ("rejected", "accepted"):
        total = sum(1 for i in images if i["status"] == status)
        shown = [t for t in thumbnails if t.status == status]
        out.append(f"<h3>{status.capitalize()}: {total}</h3>")
        if shown:
            out.append('<div class="thumbs">' + "".join(_figure(t) for t in shown) + "</div>")
        if total > len(shown):
            out.append(
                f'<p class="muted">{total - len(shown)} more {status} image(s) not shown; '
                "all are listed in report.json</p>"
            )
    return out


@dataclass(frozen=True)
class Earlier:
    """The batches before a report's batch: the last MAX_HISTORY of them (oldest first), how many
    there are and the accepted rows they delivered, so a page never reads the whole history."""

    recent: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    rows_accepted: int = 0


def _history(report: dict[str, Any], earlier: Earlier) -> list[str]:
    this = report
    batches = [*earlier.recent[-MAX_HISTORY:], this]
    delivered = earlier.rows_accepted + int(this["rows_accepted"])
    out = [
        "<h2>Place in the master's history</h2>",
        f"<p>Batch number {int(this['sequence'])} in delivery order, after {earlier.count} "
        f"earlier batch(es). Accepted rows delivered so far, this batch included: {delivered}; "
        "the master holds at most that many, fewer where a batch updated keys seen before. "
        "Validation runs before the merge and does not read the master: its row counts before "
        "and after this batch are in <code>metrics/master.json</code> and in the lineage "
        f"commit <code>batch {cell(this['batch_id'])}</code> once merge has run.</p>",
    ]
    hidden = max(0, earlier.count - MAX_HISTORY)
    rows = []
    for batch in batches:
        mark = ' class="this"' if batch is this else ""
        rows.append(
            f"<tr{mark}><td>{int(batch['sequence'])}</td><td><code>{cell(batch['batch_id'])}"
            f"</code></td><td>{cell(batch.get('name') or '')}</td>"
            f'<td><span class="status {cell(batch["status"])}">{cell(batch["status"])}</span></td>'
            f"<td>{int(batch['rows_in'])}</td><td>{int(batch['rows_accepted'])}</td>"
            f"<td>{int(batch['rows_rejected'])}</td><td>{cell(batch['contract'])}</td></tr>"
        )
    if hidden:
        out.append(f'<p class="muted">{hidden} earlier batch(es) not shown.</p>')
    out.append(
        "<table><tr><th>#</th><th>batch</th><th>name</th><th>outcome</th><th>rows in</th>"
        "<th>accepted</th><th>rejected</th><th>contract</th></tr>" + "".join(rows) + "</table>"
    )
    return out


# What every page mainstem writes allows: its own inline styles, `data:` images, and inline SVG
# (part of the document); no script, no fetch, no external anything.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
PAGE_END = ("</body></html>", "")


def page_head(title: str, css: str) -> list[str]:
    """The opening lines of a self-contained page: doctype, charset, CSP, escaped title, CSS."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        f"<title>{cell(title, 200)}</title><style>{css}</style></head><body>",
    ]


def render(report: dict[str, Any], thumbnails: list[Thumbnail], earlier: Earlier) -> bytes:
    """The page for `report`, with `thumbnails` and what it shows of the `earlier` batches."""
    status = str(report["status"])
    name = report.get("name")
    title = f"Batch {report['batch_id']}" + (f" ({name})" if name else "")
    parts = [
        *page_head(title, _CSS),
        f'<h1>{cell(title, 200)} <span class="status {cell(status)}">{cell(status)}</span></h1>',
        f'<p class="muted">Validated against contract <b>{cell(report["contract"])}</b>. '
        "Values from the delivery are shown escaped and cut; a leading ' marks a value a "
        "spreadsheet would run as a formula.</p>",
        '<div class="counts">',
        _count("rows in", report["rows_in"]),
        _count("rows accepted", report["rows_accepted"]),
        _count("rows rejected", report["rows_rejected"]),
        _count("images accepted", report["images_accepted"]),
        _count("images rejected", report["images_rejected"]),
        "</div>",
        *_reasons(report),
        *_failures(report),
        *_images(report, thumbnails),
        *_history(report, earlier),
        *PAGE_END,
    ]
    return "\n".join(parts).encode("utf-8")
