"""`mainstem submit` through the CLI, and progress bars: drawn on a terminal, silent elsewhere."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pty
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mainstem.cli import main
from mainstem.master import merge
from mainstem.master.parts import AppliedBatch, Manifest, Partitioning
from mainstem.progress import progress

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    """A folder with the project's params.yaml: enough for `submit`, which needs no DVC."""
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    return tmp_path


def test_submit_copies_writes_the_manifest_then_ready(
    settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch"
    (batch / "images").mkdir(parents=True)
    (batch / "rows.csv").write_text("item_id\n1\n")
    (batch / "images" / "1.png").write_bytes(os.urandom(3 << 20))
    main(["submit", str(batch), "--name", "b1", "--workspace", str(settings)])
    assert "delivered 2 files" in capsys.readouterr().out
    incoming = settings / "data" / "incoming" / "b1"  # a queue entry of its own
    manifest = json.loads((incoming / "_MANIFEST.json").read_text())
    assert manifest["name"] == "b1"
    for item in manifest["files"]:
        data = (incoming / item["path"]).read_bytes()
        assert data == (batch / item["path"]).read_bytes()
        assert (item["size"], item["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert (incoming / "_READY").exists()
    assert (incoming / "_READY").stat().st_mtime_ns >= (
        incoming / "_MANIFEST.json"
    ).stat().st_mtime_ns

    # a second producer does not wait: its batch gets a folder of its own, and the queue shows
    main(["submit", str(batch), "--name", "b1", "--workspace", str(settings)])
    out = capsys.readouterr().out
    assert "b1.2" in out
    assert "queue: 2 batch(es) wait" in out

    with pytest.raises(SystemExit) as exited:
        main(["submit", str(batch), "--name", "../b2", "--workspace", str(settings)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "cannot name a batch's folder" in err
    assert "Traceback" not in err


def test_a_long_step_draws_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    def step() -> None:
        with progress(4, "canonicalizing", unit="img") as bar:
            for _ in range(4):
                time.sleep(0.4)  # the bar appears once a step has run for a second
                bar.update(1)

    drawn = _drawn_on_a_terminal(monkeypatch, step)
    assert b"canonicalizing" in drawn
    assert b"img" in drawn


def test_a_step_off_a_terminal_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress(3, "quiet") as bar:
        time.sleep(1.2)
        bar.update(3)
    assert capsys.readouterr().err == ""


def _drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch, step: Callable[[], object]) -> bytes:
    """What `step` drew on a 100-column terminal standing in for stderr."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    drawn = b""
    with os.fdopen(terminal, "w", encoding="utf-8") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        step()
        stream.flush()
        os.set_blocking(controller, False)
        # Read while the terminal side is open: Linux drops unread output once it closes.
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(controller, 65536):
                drawn += chunk
    os.close(controller)
    return drawn


def test_a_long_merge_draws_a_bar_of_parts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    schema = pa.schema([pa.field("item_id", pa.int64(), nullable=False)])
    empty = Manifest("test/v1", "item_id", Partitioning("range", 10), "fingerprint")
    rows = pa.table({"item_id": list(range(40))}, schema=schema)
    applied = AppliedBatch("b1", 1, "accepted", "sha", rows.num_rows)
    rewrite = merge.rewrite_part

    def slow_rewrite(*args: Any) -> pa.Table:
        time.sleep(0.4)  # a part of a large master; the bar appears after a second
        return rewrite(*args)

    monkeypatch.setattr(merge, "rewrite_part", slow_rewrite)
    staged = tmp_path / "staged"
    staged.mkdir()
    drawn = _drawn_on_a_terminal(
        monkeypatch,
        lambda: merge.apply_batches(
            tmp_path,
            merge.MergePlan(empty, [merge.PendingBatch(applied, rows)], schema),
            staged,
            workers=1,
        ),
    )
    assert b"merge" in drawn
    assert b"part" in drawn
    assert sorted(p.name for p in staged.iterdir()) == [
        f"part-{index:012d}.parquet" for index in range(4)
    ]
