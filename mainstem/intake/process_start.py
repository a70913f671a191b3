"""When a process started, on a clock that a change of the wall clock does not move.

In: a pid. Out: its start in seconds since the machine booted, and whether a recorded start is
still the process that now holds that pid. The lock owner and the service records identify a
process by pid and start, so that a recycled pid is never taken for the original. A wall-clock
start (psutil's `create_time`) is boot time plus ticks, and Linux moves its boot time whenever the
clock is stepped (NTP, a VM resumed): a record taken before such a step then no longer matched its
own live process, which was taken for dead, left running, and waited on for ever. The ticks since
boot in `/proc/<pid>/stat` never move. A record written by an older release holds a wall-clock
start (seconds since 1970, far more than any uptime); it is compared the old way.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

# A start since boot is read to the tick, so the same process gives the same value: half a tick
# of slack only absorbs float rounding, and keeps a pid reused after a reboot, at nearly the same
# time since boot, from passing. A wall-clock start is only good to the second.
TICK = 1.0 / os.sysconf("SC_CLK_TCK")
WALL_CLOCK_SLACK = 1.0
# No machine has been up for 31 years; a recorded start above this is a wall-clock one.
WALL_CLOCK_FLOOR = 1e9
HAS_PROC = Path("/proc/self/stat").exists()


def _since_boot_from_proc(pid: int, zombie: bool) -> float | None:
    """The start from `/proc/<pid>/stat`; None when there is no such process (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or (fields[0] == "Z" and not zombie):  # field 3 is the state
        return None
    return int(fields[19]) * TICK  # field 22: the start, in ticks since boot


def started(pid: int, zombie: bool = False) -> float:
    """When `pid` started, in seconds since boot; 0.0 when it is gone.

    A process that exited stays a zombie until its parent reaps it. It holds nothing any more, so
    it counts as gone too, unless `zombie` (a start recorded for a child that may already have
    exited, to be reaped and reported later).
    """
    if HAS_PROC:
        return _since_boot_from_proc(pid, zombie) or 0.0
    return _wall_clock_start(pid, zombie)  # no /proc (macOS): the best there is


def _wall_clock_start(pid: int, zombie: bool = True) -> float:
    """psutil's wall-clock start of `pid`; 0.0 when it is gone (or a zombie, unless `zombie`)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE and not zombie:
            return 0.0
        return float(process.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return 0.0


def is_same_process(pid: int, recorded: float) -> bool:
    """Whether the live, non-zombie process holding `pid` is the one that started at `recorded`."""
    now = started(pid)
    if now == 0.0:
        return False
    if now > WALL_CLOCK_FLOOR:  # no /proc: both are wall-clock starts
        return abs(now - recorded) < WALL_CLOCK_SLACK
    if recorded > WALL_CLOCK_FLOOR:  # a record from an older release
        return abs(_wall_clock_start(pid) - recorded) < WALL_CLOCK_SLACK
    return abs(now - recorded) < TICK / 2
