"""Progress bars for long steps, shown only to a person watching a terminal.

In: a step's size (items or bytes) and a label. Out: a tqdm bar that appears once the step has
run for a second, on stderr when stderr is a terminal, or on the terminal of the `mainstem`
command that started this process: `mainstem` sets MAINSTEM_PROGRESS=tty for the `dvc repro` it
runs, whose stage output it captures. Anywhere else (Airflow tasks, tests, CI, pipes) the bar is
disabled and costs nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

PROGRESS_ENV = "MAINSTEM_PROGRESS"


def terminal() -> TextIO | None:
    """Where progress goes: stderr if it is a terminal, else the controlling one when asked."""
    if sys.stderr.isatty():
        return sys.stderr
    if os.environ.get(PROGRESS_ENV) == "tty":
        try:
            return open("/dev/tty", "w", encoding="utf-8")
        except OSError:
            return None
    return None


def enabled() -> bool:
    """Whether a bar would be shown; a caller may then split work to report it."""
    stream = terminal()
    if stream is not None and stream is not sys.stderr:
        stream.close()
    return stream is not None


def show_to_children() -> None:
    """Let the processes this one starts draw on its terminal (their stderr may be captured)."""
    if sys.stderr.isatty():
        os.environ[PROGRESS_ENV] = "tty"


@contextmanager
def progress(total: int, label: str, unit: str = "it", scale: bool = False) -> Iterator[tqdm]:
    """A bar for `total` units of work, updated with `bar.update(n)`; silent off a terminal."""
    stream = terminal()
    bar = tqdm(
        total=total,
        desc=label,
        unit=unit,
        unit_scale=scale,
        file=stream,
        disable=stream is None,
        delay=1.0,
        leave=False,
        dynamic_ncols=True,
    )
    try:
        yield bar
    finally:
        bar.close()
        if stream is not None and stream is not sys.stderr:
            stream.close()
