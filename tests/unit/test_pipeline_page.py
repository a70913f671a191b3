"""The pipeline page built from given records: its values, its escaping, its bytes."""

from __future__ import annotations

import re
from dataclasses import replace

from mainstem.flow.pipeline_page import (
    OTHER_REASONS,
    BatchPoint,
    PipelineHistory,
    TrainingPoint,
    bin_width,
    binned,
    contract_spans,
    reason_series,
    render_page,
    report_link,
    threshold_line,
)

HOSTILE = "<script>alert(1)</script>"


def batch(number: int, **changes: object) -> BatchPoint:
    rows_in, accepted = 100, 90
    point = BatchPoint(
        number=number,
        batch_id=f"{number:016x}",
        name=f"batch-{number:03d}",
        status="accepted",
        rows_in=rows_in,
        rows_accepted=accepted,
        rows_rejected=rows_in - accepted,
        master_rows=accepted * number,
        contract="produce/v1",
        reasons=(("weight_g · in_range", rows_in - accepted),),
    )
    return replace(point, **changes)  # type: ignore[arg-type]


def training(after: int, version: str, promoted: bool, production: str) -> TrainingPoint:
    return TrainingPoint(
        after, version, "f1_macro", 0.5 + int(version) / 10, 90 * after, promoted, production
    )


def history(**changes: object) -> PipelineHistory:
    base = PipelineHistory(
        workspace="/w",
        batches=tuple(batch(n) for n in range(1, 7)),
        trainings=(training(2, "1", True, "1"), training(4, "2", False, "1")),
        threshold_rows=150,
        threshold_source="params.yaml",
        queue={"exists": True, "files": 0, "first_files": [], "ready": False, "lock": None},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_threshold_follows_the_production_model_not_the_last_training() -> None:
    # batch 1-2: no production yet; from batch 3 on, version 1 (trained on 180 rows) is
    # production, and version 2 (kept back, trained on 360) does not move the line.
    assert threshold_line(history()) == [None, None, 330.0, 330.0, 330.0, 330.0]


def test_a_promoted_training_moves_the_threshold() -> None:
    moved = history(trainings=(training(2, "1", True, "1"), training(4, "2", True, "2")))
    assert threshold_line(moved) == [None, None, 330.0, 330.0, 510.0, 510.0]


def test_reasons_keep_the_top_five_and_sum_the_rest() -> None:
    batches = [
        batch(1, reasons=tuple((f"r{n}", 10 - n) for n in range(7))),
        batch(2, reasons=(("r0", 1), ("r5", 1), ("ignored", 0))),
    ]
    series = reason_series(batches)
    assert list(series) == ["r0", "r1", "r2", "r3", "r4", OTHER_REASONS]
    assert series["r0"] == [10, 1]
    assert series[OTHER_REASONS] == [5 + 4, 1]


def test_contract_spans_mark_each_change() -> None:
    batches = [batch(1), batch(2), batch(3, contract="produce/v2"), batch(4, contract="produce/v1")]
    assert contract_spans(batches) == [
        ("produce/v1", 1, 2),
        ("produce/v2", 3, 3),
        ("produce/v1", 4, 4),
    ]


def test_rejected_batches_link_to_their_reports() -> None:
    page = render_page(history(batches=(batch(1), batch(2, status="rejected")))).decode()
    link = "batches/0000000000000002.html"
    assert f'<a xlink:href="{link}"' in page  # the chart's marker
    assert f'<a href="{link}">' in page  # the table
    assert "batches/0000000000000001.html" not in page


def test_a_batch_id_that_is_not_an_id_gets_no_link() -> None:
    assert report_link("../../etc") is None
    assert report_link("0123456789abcdef") == "batches/0123456789abcdef.html"


def test_hostile_names_reasons_and_lock_holders_are_escaped() -> None:
    hostile = batch(2, status="rejected", name=HOSTILE, contract=HOSTILE, reasons=((HOSTILE, 100),))
    queue = {
        "exists": True,
        "files": 1,
        "first_files": [HOSTILE],
        "ready": True,
        "lock": {
            "run_id": HOSTILE,
            "host": "h",
            "pid": 1,
            "claimed_at": "2026-01-01T00:00:00+00:00",
            "heartbeat_at": "2026-01-01T00:00:05+00:00",
            "batch_id": "b",
        },
    }
    page = render_page(history(batches=(batch(1), hostile), queue=queue)).decode()
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_carries_the_strict_policy_and_no_script() -> None:
    page = render_page(history()).decode()
    assert "default-src 'none'" in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert page.count("<svg") == 5


def test_the_same_history_gives_the_same_bytes() -> None:
    assert render_page(history()) == render_page(history())


def test_the_summary_shows_the_production_version_and_the_next_retrain() -> None:
    text = re.sub(r"<[^>]+>", " ", render_page(history()).decode())
    assert re.search(r"\b330 retrain at\b", text)
    assert re.search(r"\bv1 production\b", text)
    assert re.search(r"\b540 master rows\b", text)


def test_an_empty_workspace_still_renders() -> None:
    empty = history(batches=(), trainings=(), queue={})
    page = render_page(empty).decode()
    assert "no model trained yet" in page
    assert "The drop folder does not exist yet" in page


def test_a_long_history_is_drawn_in_at_most_two_hundred_bars() -> None:
    assert [bin_width(n) for n in (1, 200, 201, 1000)] == [1, 1, 2, 5]
    assert binned([1, 2, 3, 4, 5], 2) == [3, 7, 5]


def test_a_thousand_batches_make_a_small_page() -> None:
    many = tuple(batch(n, status="rejected" if n % 20 == 0 else "accepted") for n in range(1, 1001))
    page = render_page(history(batches=many))
    assert len(page) < 1_000_000
    assert page.decode().count('href="batches/') == 50 + 25  # 50 markers, 25 listed


def test_a_dollar_sign_in_a_reason_or_contract_is_text_not_math() -> None:
    odd = "cost $x^{ and $"
    page = render_page(history(batches=(batch(1, reasons=((odd, 5),), contract=odd),)))
    assert page.decode().count("cost $x^{ and $") >= 2  # the legend and the contract axis
