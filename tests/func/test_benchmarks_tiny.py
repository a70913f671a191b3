"""The benchmark still runs end to end: at its tiny size it writes both result files in full.

Only the shape of the output is checked; timings are never asserted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.__main__ import main


# every section runs, the real scheduler's P7 and P8 and a worker's P15 among them
@pytest.mark.timeout(1800)
def test_tiny_benchmark_writes_every_target(tmp_path: Path) -> None:
    main(["--size", "tiny", "--out", str(tmp_path / "results"), "--work", str(tmp_path)])

    data = json.loads((tmp_path / "results" / "results.json").read_text())
    assert data["size"] == "tiny"
    targets = [(t["id"], t["goal"]) for t in data["targets"]]
    ids = Counter(t[0] for t in targets)
    # the targets each section sets: P1 and P2 two spreads, P7 latency and P8 a queue's drain
    # (the real scheduler), P10 tuned Delta over mainstem (wall and CPU, two spreads), P11 nine
    # (eight ratios of the longer history to the shorter, three of them in CPU time, and the
    # cache growth over the batch's bytes), P14 two (three where Chromium is installed), P15 a
    # worker's pull (fresh and kept cache, bytes and seconds)
    expected = Counter(
        P1=2, P2=2, P3=1, P4=1, P5=1, P6=1, P7=1, P8=1, P9=1, P10=4, P11=9, P12=2, P13=2, P14=2
    )
    expected["P15"] = 4
    expected["P16"] = 1  # batches per hour through the Celery stack, against a direct drain
    assert ids - Counter(P14=1) == expected or ids == expected
    measured = {m["id"] for m in data["measurements"]}
    assert measured == set(expected)
    assert all(t["figure"] is not None for t in data["targets"])

    table = (tmp_path / "results" / "results.md").read_text()
    for _id, goal in targets:
        assert goal in table
    assert "naive pandas full rewrite" in table
    assert "dvc push (local remote)" in table
    assert "retrain decision (policy.decide" in table
    assert "retrain explain, no MLflow store yet" in table
    assert "retrain explain, a store with production" in table
    assert "pipeline page size, 50 batches" in table
    assert "Delta tuned layout, range predicate" in table
    assert "Delta default layout" in table
    assert "kept cache: dvc pull of one batch's changes" in table
    assert "_READY → decision, worst" in table
    assert "batches of 100 rows drained" in table
    assert "mainstem process, nothing waiting" in table
    assert "batch minus no-op, CPU time" in table
    assert "Celery stack: batches per hour" in table
