"""Repeated benchmark runs are judged by their median, not by their best run."""

from __future__ import annotations

from typing import Any

from benchmarks.run_medians import median_table


def _run(figure: float | None, load: float) -> dict[str, Any]:
    target = {
        "id": "P11",
        "goal": "merge: after 10,000 ÷ after 10",
        "figure": figure,
        "bound": 1.3,
        "direction": "at_most",
    }
    return {"targets": [target], "machine": {"load_average_1min": [load]}}


def test_a_target_met_in_one_run_of_three_is_not_met() -> None:
    table = median_table([_run(1.1, 3.0), _run(1.5, 4.0), _run(1.4, 5.0)])
    row = next(line for line in table.splitlines() if line.startswith("| P11"))
    assert (
        row
        == "| P11 | merge: after 10,000 ÷ after 10 | 1.10 | 1.50 | 1.40 | 1.40 | ≤ 1.3 | **no** |"
    )


def test_a_target_met_by_the_median_is_met() -> None:
    table = median_table([_run(1.1, 3.0), _run(1.5, 4.0), _run(1.2, 5.0)])
    assert "| 1.20 | ≤ 1.3 | yes |" in table
    assert "run 1: 3; run 2: 4; run 3: 5" in table


def test_a_run_without_the_figure_leaves_no_median() -> None:
    table = median_table([_run(1.1, 3.0), _run(None, 4.0)])
    assert "| 1.10 | n/a | n/a | ≤ 1.3 | n/a |" in table
