"""Which running processes use a folder, so that nothing deletes it from under them.

In: a folder. Out: this user's live processes (other than the caller and its ancestors) whose
working directory, command line or environment names a path inside it: an Airflow whose
`AIRFLOW_HOME` or DAG folder is there, a shell `cd`-ed into it, a `dvc repro` running in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _names_inside(value: str, folder: str) -> bool:
    """Whether `value` mentions `folder` or a path below it (`sqlite:////f/x.db` counts)."""
    start = value.find(folder)
    while start != -1:
        end = start + len(folder)
        if end == len(value) or value[end] in "/:= ":
            return True
        start = value.find(folder, start + 1)
    return False


def processes_using(folder: Path) -> list[str]:
    """Each process using `folder`, as "pid (command)", in pid order."""
    target = str(folder.resolve())
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    uid = os.getuid()
    found = []
    for process in psutil.process_iter(["pid", "uids", "cwd", "cmdline", "environ"]):
        info = process.info
        if info["pid"] in own or info["uids"] is None or info["uids"].real != uid:
            continue
        command = info["cmdline"] or []
        values = [info["cwd"] or "", *command, *(info["environ"] or {}).values()]
        if any(_names_inside(value, target) for value in values):
            found.append((info["pid"], " ".join(command)[:80] or "?"))
    return [f"{pid} ({command})" for pid, command in sorted(found)]
