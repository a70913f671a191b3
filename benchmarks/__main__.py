"""`python -m benchmarks [--size tiny|full] [--out DIR] [--only P1 P4 ...]`."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks import (
    celery_bench,
    decision_bench,
    delta_bench,
    explain_bench,
    fixed_cost_bench,
    flow_bench,
    history_bench,
    images_bench,
    latency_bench,
    lineage_bench,
    merge_bench,
    pipeline_page_bench,
    versioning_bench,
    worker_pull_bench,
)
from benchmarks.results_table import Results
from benchmarks.sizes import SIZES
from mainstem.commands import QUIET_ENV

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = {
    "P1": merge_bench.run,
    "P2": versioning_bench.run,
    "P4": images_bench.run,
    "P5": flow_bench.run,
    "P6": decision_bench.run,
    "P7": latency_bench.run,
    "P10": delta_bench.run,
    "P9": fixed_cost_bench.run,
    "P11": history_bench.run,
    "P12": explain_bench.run,
    "P13": lineage_bench.run,
    "P14": pipeline_page_bench.run,
    "P15": worker_pull_bench.run,
    "P16": celery_bench.run,
}


def main(argv: list[str] | None = None) -> Results:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results.md/json go")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(SECTIONS),
        help="run only these sections (P2 includes P3, P7 includes P8)",
    )
    parser.add_argument(
        "--drain-batches",
        type=int,
        help="P8's queue length instead of the size's (100 at full), for a shorter run",
    )
    args = parser.parse_args(argv)
    os.environ.update(QUIET_ENV)
    size = SIZES[args.size]
    if args.drain_batches:
        size = replace(size, drain_batches=args.drain_batches)
    results = Results(size.name)
    work = Path(tempfile.mkdtemp(prefix="mainstem-bench-", dir=args.work))
    try:
        for name, section in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            results.sample_load()
            section(size, work, results)
        results.sample_load()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write(args.out)
    print(f"wrote {args.out / 'results.md'} and results.json")
    return results


if __name__ == "__main__":
    main()
