"""Fault injection for the crash tests: kill the process at the n-th write point.

In: the environment variables MAINSTEM_CRASH_AT (an integer n) and MAINSTEM_CRASH_COUNTER (a
file shared by every process of one pipeline run). Out: nothing, unless the n-th write point of the
run is reached, where the process SIGKILLs itself. With the variables unset each call is a dict
lookup, so the hooks stay in production code, where the writes they guard are.
"""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

CRASH_AT = "MAINSTEM_CRASH_AT"
COUNTER = "MAINSTEM_CRASH_COUNTER"
TRACE = "MAINSTEM_CRASH_TRACE"


def reach(label: str) -> None:
    """Count one write point; die here if it is the one the test asked for."""
    target = os.environ.get(CRASH_AT)
    counter = os.environ.get(COUNTER)
    if not target or not counter:
        return
    with open(counter, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        count = len(handle.read().splitlines()) + 1
        handle.write(f"{label}\n")
        handle.flush()
    trace = os.environ.get(TRACE)
    if trace:
        with open(trace, "a") as log:
            log.write(f"{count}\t{label}\n")
    if count == int(target):
        Path(counter).with_suffix(".fired").write_text(label + "\n")
        os.kill(os.getpid(), signal.SIGKILL)
