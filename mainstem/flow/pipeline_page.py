"""The pipeline page: the story of one workspace over time, as one self-contained HTML page.

In: a PipelineHistory: the batches and trainings its lineage commits record (with what the DVC
metrics files said at each commit and the reasons from each batch's validation report), the retrain
threshold, and the drop folder and its lock now. Out: the bytes of one HTML page with inline SVG
charts: the master's growth against the retrain threshold with the trainings marked, rows in,
accepted and rejected per batch, rejections by reason, the eval metric of each registered version,
the active contract along the timeline, and the queue and lock now. Same shell as the batch
report: a strict CSP, no script, every value from a delivery escaped; same inputs, same bytes.

The charts are drawn with matplotlib's SVG backend, from a `Figure` (no pyplot, no global state),
with a fixed hash salt per chart and no date in the metadata, so the output is byte-stable. Series
are drawn as stairs (one path per series, not one element per batch), which keeps the page small
at a thousand batches.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mainstem.validation.report import PAGE_END, cell, page_head

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TOP_REASONS = 5
OTHER_REASONS = "other reasons"
MAX_LISTED = 25
MAX_BARS = 200  # a per-batch chart sums neighbouring batches beyond this: a bar stays >= 3 px
_REPORT_LINK = re.compile(r"^[0-9a-f]{8,64}$")
_COLORS = {
    "master": "#1565c0",
    "threshold": "#c62828",
    "promoted": "#2e7d32",
    "kept": "#ef6c00",
    "accepted": "#66bb6a",
    "rejected": "#ef5350",
    "in": "#37474f",
}
_REASON_COLORS = ("#8e24aa", "#f4511e", "#3949ab", "#00897b", "#fdd835", "#9e9e9e")

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2327;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}figcaption{color:#444}
table{border-collapse:collapse;margin:4px 0 8px;width:100%}
th,td{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.muted{color:#666}
.counts{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.count{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.count b{display:block;font-size:22px}
"""


@dataclass(frozen=True)
class BatchPoint:
    """One batch as its lineage commit recorded it; `number` is its place in the lineage, from 1."""

    number: int
    batch_id: str
    name: str | None
    status: str  # accepted | rejected | duplicate
    rows_in: int
    rows_accepted: int
    rows_rejected: int
    master_rows: int
    contract: str
    reasons: tuple[tuple[str, int], ...] = ()  # why rows were refused, and how many of them


@dataclass(frozen=True)
class TrainingPoint:
    """One training as its lineage commit recorded it, after `after_batch` batches."""

    after_batch: int
    model_version: str
    eval_metric: str
    score: float
    master_rows: int
    promoted: bool
    production_version: str


@dataclass(frozen=True)
class PipelineHistory:
    """Everything the page shows; `queue` is the drop folder now (status.incoming_status)."""

    workspace: str
    batches: tuple[BatchPoint, ...]
    trainings: tuple[TrainingPoint, ...]
    threshold_rows: int
    threshold_source: str
    queue: dict[str, Any] = field(default_factory=dict)


def report_link(batch_id: str) -> str | None:
    """Where a batch's HTML report is, relative to the page (`reports/` in the workspace): its
    copy in `reports/batches/` (flow/report_pages.py), made when the page is written."""
    if not _REPORT_LINK.fullmatch(batch_id):
        return None
    return f"batches/{batch_id}.html"


def production_version(history: PipelineHistory) -> str | None:
    return history.trainings[-1].production_version if history.trainings else None


def threshold_line(history: PipelineHistory) -> list[float | None]:
    """Per batch, the master size at which the policy retrains: the rows the production model
    of that moment was trained on, plus the threshold; None before there is a production model."""
    trained: dict[str, int] = {}
    line: list[float | None] = []
    pending = list(history.trainings)
    base: int | None = None
    for batch in history.batches:
        while pending and pending[0].after_batch < batch.number:
            done = pending.pop(0)
            trained[done.model_version] = done.master_rows
            base = trained.get(done.production_version, base)
        line.append(None if base is None else float(base + history.threshold_rows))
    return line


def reason_series(batches: Sequence[BatchPoint]) -> dict[str, list[int]]:
    """Refused rows per batch for the most frequent reasons, the rest summed as 'other reasons'."""
    totals: Counter[str] = Counter()
    for batch in batches:
        for reason, rows in batch.reasons:
            if rows > 0:
                totals[reason] += rows
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    top = [reason for reason, _rows in ranked[:TOP_REASONS]]
    series = {reason: [0] * len(batches) for reason in top}
    if len(ranked) > TOP_REASONS:
        series[OTHER_REASONS] = [0] * len(batches)
    for index, batch in enumerate(batches):
        for reason, rows in batch.reasons:
            if rows > 0:
                series[reason if reason in top else OTHER_REASONS][index] += rows
    return series


def contract_spans(batches: Sequence[BatchPoint]) -> list[tuple[str, int, int]]:
    """The active contract along the timeline: (contract, first batch, last batch) per span."""
    spans: list[tuple[str, int, int]] = []
    for batch in batches:
        if spans and spans[-1][0] == batch.contract:
            spans[-1] = (batch.contract, spans[-1][1], batch.number)
        else:
            spans.append((batch.contract, batch.number, batch.number))
    return spans


def chart_text(text: str, limit: int = 70) -> str:
    """A delivered string as chart text: cut, and with `$` escaped, which would start math."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return cut.replace("$", r"\$")


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure

    # Fixed margins: a layout engine would measure every label first, and doubles the time.
    figure = Figure(figsize=(10, height), dpi=72)
    figure.subplots_adjust(left=0.14, right=0.98, top=1 - 0.3 / height, bottom=0.6 / height)
    return figure


def _svg(figure: Figure, salt: str) -> str:
    """The figure as an inline `<svg>` element, byte-stable for the same figure and salt."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(
        {"svg.hashsalt": salt, "svg.fonttype": "none", "svg.id": salt, "path.simplify": True}
    ):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :].strip()


def bin_width(count: int) -> int:
    """How many batches one bar of a per-batch chart sums: 1 up to MAX_BARS batches."""
    return max(1, -(-count // MAX_BARS))


def binned(values: Sequence[int], width: int) -> list[int]:
    """`values` summed in consecutive groups of `width`, the last one possibly shorter."""
    return [sum(values[start : start + width]) for start in range(0, len(values), width)]


def _edges(count: int, width: int = 1) -> list[float]:
    return [start + 0.5 for start in range(0, count, width)] + [count + 0.5]


def _per(width: int) -> str:
    return "per batch" if width == 1 else f"per {width} batches"


def _axis(ax: Axes, ylabel: str) -> None:
    ax.set_xlabel("batch (in lineage order)")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#e0e0e0")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=9, frameon=False)


def master_chart(history: PipelineHistory) -> str:
    batches = history.batches
    figure = _figure(3.6)
    ax = figure.add_subplot()
    if batches:
        edges = _edges(len(batches))
        ax.stairs(
            [b.master_rows for b in batches],
            edges,
            baseline=None,
            color=_COLORS["master"],
            label="master",
        )
        limit = threshold_line(history)
        nan = float("nan")
        ax.stairs(
            [nan if v is None else v for v in limit],
            edges,
            baseline=None,
            color=_COLORS["threshold"],
            linestyle="--",
            label=f"retrain threshold (production's rows + {history.threshold_rows})",
        )
    for promoted, label in ((True, "training, promoted"), (False, "training, kept back")):
        shown = [t for t in history.trainings if t.promoted is promoted]
        if shown:
            ax.scatter(
                [t.after_batch + 0.5 for t in shown],
                [t.master_rows for t in shown],
                marker="o" if promoted else "D",
                s=50,
                facecolors=_COLORS["promoted"] if promoted else "none",
                edgecolors=_COLORS["promoted" if promoted else "kept"],
                zorder=3,
                label=label,
            )
    _axis(ax, "rows in the master")
    return _svg(figure, "mainstem-master")


def rows_chart(history: PipelineHistory) -> str:
    batches = history.batches
    width = bin_width(len(batches))
    figure = _figure(3.2)
    ax = figure.add_subplot()
    if batches:
        edges = _edges(len(batches), width)
        accepted = binned([b.rows_accepted for b in batches], width)
        rejected = binned([b.rows_rejected for b in batches], width)
        ax.stairs(accepted, edges, fill=True, color=_COLORS["accepted"], label="accepted")
        ax.stairs(
            [a + r for a, r in zip(accepted, rejected, strict=True)],
            edges,
            baseline=accepted,
            fill=True,
            color=_COLORS["rejected"],
            label="rejected",
        )
        rows_in = binned([b.rows_in for b in batches], width)
        ax.stairs(rows_in, edges, color=_COLORS["in"], label="rows in")
        refused = [b for b in batches if b.status == "rejected"]
        if refused:
            marks = ax.scatter(
                [b.number for b in refused],
                [(max(rows_in) or 1) * 1.05] * len(refused),
                marker="v",
                color=_COLORS["threshold"],
                label="batch rejected (links to its report)",
                zorder=3,
            )
            marks.set_urls([report_link(b.batch_id) for b in refused])
    _axis(ax, f"rows {_per(width)}")
    return _svg(figure, "mainstem-rows")


def reasons_chart(history: PipelineHistory) -> str:
    batches = history.batches
    width = bin_width(len(batches))
    figure = _figure(3.2)
    ax = figure.add_subplot()
    series = reason_series(batches)
    if series:
        edges = _edges(len(batches), width)
        base = [0] * len(edges[1:])
        for (reason, values), color in zip(series.items(), _REASON_COLORS, strict=False):
            top = [a + b for a, b in zip(base, binned(values, width), strict=True)]
            ax.stairs(top, edges, baseline=base, fill=True, color=color, label=chart_text(reason))
            base = top
    else:
        ax.text(0.5, 0.5, "no row refused yet", ha="center", transform=ax.transAxes)
    _axis(ax, f"refused rows (cases) {_per(width)}")
    return _svg(figure, "mainstem-reasons")


def versions_chart(history: PipelineHistory) -> str:
    trainings = history.trainings
    figure = _figure(2.8)
    ax = figure.add_subplot()
    production = production_version(history)
    if trainings:
        labels = [chart_text(f"v{t.model_version}", 20) for t in trainings]
        colors = [
            _COLORS["promoted"] if t.model_version == production else "#90a4ae" for t in trainings
        ]
        ax.bar(labels, [t.score for t in trainings], color=colors)
        ax.set_ylabel(chart_text(trainings[-1].eval_metric))
        ax.set_title(chart_text(f"green: production (version {production})"), fontsize=10)
    else:
        ax.text(0.5, 0.5, "no model trained yet", ha="center", transform=ax.transAxes)
    ax.grid(axis="y", color="#e0e0e0")
    return _svg(figure, "mainstem-versions")


def contracts_chart(history: PipelineHistory) -> str:
    spans = contract_spans(history.batches)
    figure = _figure(1.2 + 0.3 * len({c for c, _a, _b in spans}))
    ax = figure.add_subplot()
    names = sorted({contract for contract, _first, _last in spans})
    for contract, first, last in spans:
        ax.broken_barh([(first - 0.5, last - first + 1)], (names.index(contract) - 0.4, 0.8))
    ax.set_yticks(range(len(names)), [chart_text(name, 40) for name in names])
    ax.set_xlabel("batch (in lineage order)")
    return _svg(figure, "mainstem-contracts")


def _count(label: str, value: object) -> str:
    return f'<div class="count"><b>{cell(value)}</b>{cell(label)}</div>'


def _rejected_table(history: PipelineHistory) -> list[str]:
    refused = [b for b in history.batches if b.status == "rejected"]
    if not refused:
        return ['<p class="muted">No batch was rejected.</p>']
    rows = []
    for batch in refused[-MAX_LISTED:]:
        link = report_link(batch.batch_id)
        shown = f"<code>{cell(batch.batch_id)}</code>"
        if link:
            shown = f'<a href="{cell(link)}">{shown}</a>'
        why = "; ".join(reason for reason, _rows in batch.reasons[:3])
        rows.append(
            f"<tr><td>{batch.number}</td><td>{shown}</td><td>{cell(batch.name or '')}</td>"
            f"<td>{batch.rows_in}</td><td>{cell(why, 300)}</td></tr>"
        )
    more = len(refused) - MAX_LISTED
    head = f'<p class="muted">the last {MAX_LISTED} of {len(refused)}</p>' if more > 0 else ""
    return [
        head,
        "<table><tr><th>#</th><th>batch</th><th>name</th><th>rows in</th><th>why</th></tr>"
        + "".join(rows)
        + "</table>",
    ]


def _trainings_table(history: PipelineHistory) -> list[str]:
    if not history.trainings:
        return []
    rows = "".join(
        f"<tr><td>{cell(t.model_version)}</td><td>{t.after_batch}</td><td>{t.master_rows}</td>"
        f"<td>{cell(t.eval_metric)} = {t.score:.4f}</td>"
        f"<td>{'promoted' if t.promoted else 'kept back'}</td></tr>"
        for t in history.trainings[-MAX_LISTED:]
    )
    return [
        "<table><tr><th>version</th><th>after batch</th><th>trained on rows</th><th>eval</th>"
        f"<th>outcome</th></tr>{rows}</table>"
    ]


def _contracts_table(history: PipelineHistory) -> list[str]:
    rows = "".join(
        f"<tr><td>{cell(contract)}</td><td>{first}</td><td>{last}</td></tr>"
        for contract, first, last in contract_spans(history.batches)[-MAX_LISTED:]
    )
    return [f"<table><tr><th>contract</th><th>from batch</th><th>to batch</th></tr>{rows}</table>"]


def _queue(queue: dict[str, Any]) -> list[str]:
    if not queue or not queue.get("exists"):
        return ['<p class="muted">The drop folder does not exist yet: nothing waits.</p>']
    waiting = f"<p>{int(queue['files'])} file(s) wait in the drop folder"
    waiting += "; the delivery is marked ready.</p>" if queue.get("ready") else ".</p>"
    listed = "".join(f"<li><code>{cell(name)}</code></li>" for name in queue["first_files"])
    out = [waiting, f"<ul>{listed}</ul>" if listed else ""]
    held = queue.get("lock")
    if held is None:
        out.append("<p>The lock is free.</p>")
    else:
        out.append(
            f"<p>The lock is held by run <code>{cell(held['run_id'])}</code> (host "
            f"{cell(held['host'])}, pid {cell(held['pid'])}) since {cell(held['claimed_at'])}, "
            f"for batch <code>{cell(held['batch_id'])}</code>; last heartbeat "
            f"{cell(held['heartbeat_at'])}.</p>"
        )
    return out


def _summary(history: PipelineHistory) -> list[str]:
    batches = history.batches
    production = production_version(history)
    limit = [v for v in threshold_line(history) if v is not None]
    return [
        '<div class="counts">',
        _count("batches", len(batches)),
        _count("rejected", sum(1 for b in batches if b.status == "rejected")),
        _count("master rows", batches[-1].master_rows if batches else 0),
        _count("retrain at", int(limit[-1]) if limit else "first batch"),
        _count("trainings", len(history.trainings)),
        _count("production", f"v{production}" if production else "none"),
        "</div>",
    ]


def render_page(history: PipelineHistory) -> bytes:
    """The page for `history`; the same history gives the same bytes."""
    title = "Pipeline"
    current = history.batches[-1].contract if history.batches else "none yet"
    parts = [
        *page_head(title, _CSS),
        f"<h1>{cell(title)}</h1>",
        f'<p class="muted">Workspace <code>{cell(history.workspace, 300)}</code>, drawn from its '
        "lineage commits and the DVC metrics files they carry. Retrain threshold: "
        f"{history.threshold_rows} rows ({cell(history.threshold_source)}).</p>",
        *_summary(history),
        "<h2>1. The master against the retrain threshold</h2>",
        f"<figure>{master_chart(history)}<figcaption>Rows in the master after each batch; the "
        "dashed line is where the policy retrains: the rows the production model was trained "
        "on plus the threshold. Filled circles: trainings whose model became production; "
        "hollow diamonds: trainings kept back.</figcaption></figure>",
        *_trainings_table(history),
        "<h2>2. Rows in, accepted and rejected per batch</h2>",
        f"<figure>{rows_chart(history)}<figcaption>Triangles mark rejected batches and link "
        "to their reports.</figcaption></figure>",
        *_rejected_table(history),
        "<h2>3. Refused rows by reason</h2>",
        f"<figure>{reasons_chart(history)}<figcaption>The {TOP_REASONS} most frequent reasons, "
        "stacked; a row failing two checks counts under both, a rejected batch counts all its "
        "rows under the first reason it was rejected for.</figcaption></figure>",
        "<h2>4. The eval metric of each registered version</h2>",
        f"<figure>{versions_chart(history)}</figure>",
        "<h2>5. Contract versions along the timeline</h2>",
        f"<figure>{contracts_chart(history)}<figcaption>Active contract now: "
        f"<b>{cell(current)}</b>.</figcaption></figure>",
        *_contracts_table(history),
        "<h2>6. The queue and the lock now</h2>",
        *_queue(history.queue),
        *PAGE_END,
    ]
    return "\n".join(parts).encode("utf-8")
