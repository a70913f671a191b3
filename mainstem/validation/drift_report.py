"""The drift section of a batch's HTML report: what it was compared with, and a chart per drift.

In: the `drift` entry of a batch report (see drift_store.measure). Out: the section's HTML, and a
page with that section put in place of the one it held. The batch page is written when the batch
is validated and its drift measured right after (and again whenever the production model changes),
so the section sits between fixed markers in the page and is swapped as a whole. The markers cannot
occur elsewhere: every value from a delivery is escaped, so no `<` of a delivery reaches the page.

Each drifted column gets a small bar chart, reference against batch (shares per bin or category),
drawn as inline SVG by matplotlib's SVG backend as the pipeline page draws its charts: from a
`Figure`, with a fixed hash salt and no date, so the page stays byte-stable and script-free.
"""

from __future__ import annotations

import io
from typing import Any

from mainstem.validation.report import PAGE_END, cell

SECTION_START = '<section id="drift">'
SECTION_END = "</section><!-- drift -->"
EMPTY_SECTION = SECTION_START + SECTION_END
_CSS = "#drift svg{max-width:420px;height:auto;display:block}.drifted td{background:#fdecea}"


def _svg_chart(column: str, chart: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    if "labels" in chart:
        labels = [str(label) for label in chart["labels"]]
    else:
        edges = chart["edges"]
        labels = [f"{edges[i]:.3g}" for i in range(len(edges) - 1)]
    figure = Figure(figsize=(4.2, 1.9), dpi=72)
    ax = figure.add_subplot()
    positions = range(len(labels))
    left, right = [p - 0.2 for p in positions], [p + 0.2 for p in positions]
    ax.bar(left, chart["reference"], 0.4, label="reference", color="#90a4ae")
    ax.bar(right, chart["batch"], 0.4, label="batch", color="#c62828")
    ax.set_xticks(list(positions), [label[:12] for label in labels], fontsize=7, rotation=45)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("share", fontsize=7)
    ax.set_title(column[:60], fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    import matplotlib

    buffer = io.StringIO()
    salt = f"drift-{column}"
    with matplotlib.rc_context(
        {"svg.hashsalt": salt, "svg.fonttype": "none", "svg.id": salt, "path.simplify": True}
    ):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :].strip()


def _reference_line(drift: dict[str, Any]) -> str:
    reference = drift.get("reference")
    if not reference:
        return ""
    return (
        f"<p>Compared with the master {cell(reference['master_md5'])} that "
        f"{cell(reference['model_name'])} version {cell(reference['version'])} (run "
        f"{cell(reference['run_id'])}) was trained on.</p>"
    )


def drift_section(drift: dict[str, Any]) -> str:
    """The section for one batch's drift: status, reference, a table, and a chart per drift."""
    parts = [SECTION_START, f"<style>{_CSS}</style>", "<h2>Drift</h2>", _reference_line(drift)]
    columns = drift.get("columns", [])
    if drift.get("message"):
        parts.append(f'<p class="muted">{cell(drift["message"], 400)}</p>')
    if columns:
        parts.append("<table><tr><th>column</th><th>statistic</th><th>value</th>")
        parts.append("<th>threshold</th><th>drifted</th></tr>")
        for column in columns:
            row = ' class="drifted"' if column["drifted"] else ""
            parts.append(
                f"<tr{row}><td>{cell(column['column'])}</td><td>{cell(column['statistic'])}</td>"
                f"<td>{column['value']:.4g}</td><td>{column['threshold']:.4g}</td>"
                f"<td>{'yes' if column['drifted'] else 'no'}</td></tr>"
            )
        parts.append("</table>")
    for column in columns:
        if column["drifted"] and column.get("chart"):
            parts.append(f"<figure>{_svg_chart(str(column['column']), column['chart'])}</figure>")
    parts.append(SECTION_END)
    return "\n".join(part for part in parts if part)


def with_drift_section(page: bytes, drift: dict[str, Any]) -> bytes:
    """`page` with its drift section replaced (or added before the end, if it has none)."""
    text = page.decode("utf-8")
    section = drift_section(drift)
    start = text.find(SECTION_START)
    end = text.find(SECTION_END, start)
    if start >= 0 and end >= 0:
        text = text[:start] + section + text[end + len(SECTION_END) :]
    else:
        closing = text.rfind(PAGE_END[0])
        text = text[:closing] + section + "\n" + text[closing:]
    return text.encode("utf-8")
