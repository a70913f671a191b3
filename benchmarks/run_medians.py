"""The median of each target over repeated benchmark runs: a figure met once is not met.

In: two or more `results.json` files of the same sections (`python -m benchmarks --out DIR`).
Out: a markdown table on stdout (or `--out FILE`): per target, its figure in each run, the median,
the bound and whether the median meets it, and the load averages each run sampled.

    python -m benchmarks.run_medians benchmarks/results/issue19/P11-run-*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def _met(figure: float | None, bound: float, direction: str) -> str:
    if figure is None:
        return "n/a"
    ok = figure <= bound if direction == "at_most" else figure >= bound
    return "yes" if ok else "**no**"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def median_table(runs: list[dict[str, Any]]) -> str:
    """The markdown table of every target's figures across `runs`, in the first run's order."""
    goals: dict[tuple[str, str], dict[str, Any]] = {}
    figures: dict[tuple[str, str], list[float | None]] = {}
    for run in runs:
        for target in run["targets"]:
            key = (target["id"], target["goal"])
            goals.setdefault(key, target)
            figures.setdefault(key, []).append(target["figure"])
    heads = " | ".join(f"run {n}" for n in range(1, len(runs) + 1))
    lines = [
        f"| target | goal | {heads} | median | bound | median met |",
        "|---|---|" + "---|" * len(runs) + "---|---|---|",
    ]
    for key, target in goals.items():
        values = figures[key]
        known = [v for v in values if v is not None]
        median = statistics.median(known) if len(known) == len(runs) else None
        bound = ("≤ " if target["direction"] == "at_most" else "≥ ") + f"{target['bound']:g}"
        cells = " | ".join(_figure(v) for v in values)
        met = _met(median, target["bound"], target["direction"])
        lines.append(f"| {key[0]} | {key[1]} | {cells} | {_figure(median)} | {bound} | {met} |")
    loads = "; ".join(
        f"run {n}: " + ", ".join(f"{v:g}" for v in run["machine"]["load_average_1min"])
        for n, run in enumerate(runs, 1)
    )
    return "\n".join([*lines, "", f"One-minute load averages sampled during each run: {loads}."])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_medians", description=__doc__)
    parser.add_argument("results", nargs="+", type=Path, help="results.json of each run")
    parser.add_argument("--out", type=Path, help="write the table here (default: stdout)")
    args = parser.parse_args(argv)
    if len(args.results) < 2:
        parser.error("give the results of two runs or more")
    runs = [json.loads(path.read_text()) for path in args.results]
    table = median_table(runs) + "\n"
    if args.out:
        args.out.write_text(table)
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
