"""Fault injection for the crash tests: kill the pipeline at its n-th write point.

In: environment variables, inherited by every process of one pipeline run (dvc and its stages too):
- MAINSTEM_CRASH_COUNTER: a file shared by those processes; each write point appends its label;
- MAINSTEM_CRASH_AT: an integer n; the n-th write point SIGKILLs the process (optional);
- MAINSTEM_CRASH_KILL_GROUP: when set, the kill takes the whole process group, so a write point
  inside a DVC stage also takes down `dvc` and the process that started it, as a lost machine would;
- MAINSTEM_CRASH_TRACE: a file that receives "n<TAB>label" for every write point reached.
Out: nothing, unless the n-th write point is reached; then `<counter>.fired` names it and the
process (or its group) dies. With the variables unset each call is a dict lookup, so the hooks stay
in production code, where the writes they guard are.
"""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

CRASH_AT = "MAINSTEM_CRASH_AT"
COUNTER = "MAINSTEM_CRASH_COUNTER"
TRACE = "MAINSTEM_CRASH_TRACE"
KILL_GROUP = "MAINSTEM_CRASH_KILL_GROUP"


def reach(label: str) -> None:
    """Count one write point; die here if it is the one the test asked for."""
    counter = os.environ.get(COUNTER)
    if not counter:
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
    target = os.environ.get(CRASH_AT)
    if target and count == int(target):
        fired = Path(counter).with_suffix(".fired")
        fired.write_text(f"{count}\t{label}\n")
        if os.environ.get(KILL_GROUP):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def read_trace(path: Path) -> list[str]:
    """The labels a traced run passed, in order."""
    if not path.exists():
        return []
    return [line.split("\t", 1)[1] for line in path.read_text().splitlines() if "\t" in line]
