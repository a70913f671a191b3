"""P14: the pipeline page of a workspace with a long history: its size and how fast it is drawn.

In: a Size (`pipeline_batches` lineage commits) and a scratch folder. Out: the page's size, the
time to build it (read the lineage and the reports, draw, in this process, best of 3 after a
warm-up) and the time headless Chromium takes to render it, over its time for an empty page. The
history is synthetic and written straight into git with `git fast-import` (a batch commit per
batch with its metrics file, a training commit every 100 batches, one batch in 20 rejected, the
active contract changing once) plus one `report.json` per batch: the pipeline never runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.commands import tool_env
from mainstem.flow.lineage import BatchRecord
from mainstem.flow.pipeline_history import read_history, write_pipeline_page
from mainstem.flow.pipeline_page import render_page
from mainstem.flow.workspace import create_workspace
from mainstem.params import Params, load_params

BOUND_MB = 1.0
BOUND_SECONDS = 1.0
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHECKS = ("grade · isin(['A', 'B', 'C'])", "weight_g · in_range", "image_file · image", "x · y")


def _report(number: int, batch_id: str, contract: str) -> dict[str, Any]:
    rejected = number % 20 == 0
    rows_in = 200 + number % 50
    bad = 0 if rejected else number % 7
    return {
        "batch_id": batch_id,
        "name": f"batch-{number:04d}",
        "sequence": number,
        "status": "rejected" if rejected else "accepted",
        "contract": contract,
        "rows_in": rows_in,
        "rows_accepted": 0 if rejected else rows_in - bad,
        "rows_rejected": rows_in if rejected else bad,
        "reasons": [f"batch-{number:04d}.csv: missing column(s) grade"] if rejected else [],
        "failures_by_check": [
            {"column": check.split(" · ")[0], "check": check.split(" · ")[1], "rows": 1}
            for check in CHECKS[: bad % 5]
        ],
        "images": [
            {"column": "image_file", "path": f"img/{n}.png", "status": "accepted", "reason": ""}
            for n in range(100)
        ],
    }


def _blob(path: str, value: dict[str, object]) -> str:
    data = json.dumps(value, indent=2, sort_keys=True) + "\n"
    return f"M 100644 inline {path}\ndata {len(data.encode())}\n{data}\n"


def _commit(branch: str, message: str, files: str, parent: str | None) -> str:
    body = message.encode()
    start = f"from {parent}\n" if parent else ""
    return (
        f"commit {branch}\ncommitter mainstem pipeline <pipeline@mainstem.invalid> "
        f"0 +0000\ndata {len(body)}\n{message}\n{start}{files}\n"
    )


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def synthetic_history(params: Params, batches: int) -> None:
    """`batches` batch commits and a training every 100 on top of the workspace's HEAD."""
    root = params.root
    branch = _git(root, "symbolic-ref", "HEAD")
    stream: list[str] = []
    master = 0
    parent: str | None = _git(root, "rev-parse", "HEAD")  # the first commit's; then fast-import's
    production: tuple[str, int] | None = None
    for number in range(1, batches + 1):
        contract = "produce/v1" if number <= batches // 2 else "produce/v2"
        batch_id = f"{number:016x}"
        report = _report(number, batch_id, contract)
        folder = params.validate.validated_dir / batch_id
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(report))
        master += report["rows_accepted"]
        record = BatchRecord.from_report(report, master)
        metrics = {"master_rows": master, "contract": contract}
        files = _blob("metrics/master.json", metrics)
        stream.append(_commit(branch, record.message(), files, parent))
        parent = None
        if number % 100 == 0:
            version = str(number // 100)
            promoted = production is None or number % 300 != 0
            production = (version, master) if promoted or production is None else production
            train = {
                "trained": True,
                "model_version": version,
                "run_id": f"run{version}",
                "promoted": promoted,
                "production_version": production[0],
                "master_rows": master,
                "f1_macro": 0.7 + number / 10_000,
            }
            message = f"train: model version {version} on {master} rows\n"
            stream.append(_commit(branch, message, _blob("metrics/train.json", train), None))
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=root,
        input="".join(stream).encode(),
        env=tool_env(),
        check=True,
    )


def _browser_seconds(browser: str, page: Path) -> float:
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        return time.perf_counter() - start


def build_seconds(params: Params) -> float:
    render_page(read_history(params))  # warm-up: matplotlib imported, files in the page cache
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        render_page(read_history(params))
        best = min(best, time.perf_counter() - start)
    return best


def run(size: Size, work: Path, results: Results) -> None:
    batches = size.pipeline_batches
    print(f"P14: the pipeline page at {batches} batches", flush=True)
    workspace = create_workspace(work / "p8" / "workspace")
    params = load_params(workspace)
    synthetic_history(params, batches)
    history = read_history(params)
    assert len(history.batches) == batches, len(history.batches)
    page = write_pipeline_page(params)
    megabytes = page.stat().st_size / 1e6
    results.measure("P14", f"pipeline page size, {batches} batches", megabytes, "MB")
    built = results.measure("P14", f"pipeline page built, {batches} batches", build_seconds(params))
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    rendered = None
    if browser:
        empty = page.with_name("empty.html")
        empty.write_text("<!DOCTYPE html><title>empty</title>")
        baseline = min(_browser_seconds(browser, empty) for _ in range(3))
        shown = min(_browser_seconds(browser, page) for _ in range(3))
        # the difference is below the noise when the page draws fast: never report it negative
        extra = max(0.0, shown - baseline)
        rendered = results.measure("P14", "pipeline page rendered by Chromium", extra)
    results.target(
        Target(
            "P14",
            f"pipeline page at {batches} batches, MB",
            megabytes,
            BOUND_MB,
            "at_most",
            "size of reports/pipeline.html over a synthetic lineage (git fast-import)",
        )
    )
    results.target(
        Target(
            "P14",
            f"pipeline page built at {batches} batches, seconds",
            built,
            BOUND_SECONDS,
            "at_most",
            "read_history + render_page in-process, best of 3 after a warm-up",
        )
    )
    if rendered is None:
        print("  P14: no headless browser installed; the render time is not measured", flush=True)
        return
    results.target(
        Target(
            "P14",
            f"pipeline page rendered by Chromium at {batches} batches, seconds",
            rendered,
            BOUND_SECONDS,
            "at_most",
            "headless Chromium --dump-dom of the page minus that of an empty page, best of 3",
        )
    )
