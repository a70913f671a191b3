"""`mainstem submit` run as its own process: off a terminal it draws no progress bar."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mainstem import progress as progress_module

ROOT = Path(__file__).resolve().parents[2]


def test_submit_is_silent_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "big.bin").write_bytes(os.urandom(8 << 20))
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "mainstem"),
            "submit",
            str(batch),
            "--workspace",
            str(settings),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != progress_module.PROGRESS_ENV},
    )
    assert completed.stderr == ""
    assert completed.stdout.startswith("delivered 1 files")
