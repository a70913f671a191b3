"""Import, while the batch process waits on `dvc repro`, what its next steps will import.

In: module names. Out: those modules in `sys.modules` by the end of the block, imported on a thread
at the lowest priority while the block runs (the block's thread waits on a child process, so the
import takes a core that would sit idle). The thread is joined before the block returns, so no
step imports a module while the thread is importing it. A module that fails to import is left
for the step that needs it to import, and to report.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

# what `push`, `record_lineage` and the pipeline page import, in that order
AFTER_REPRO = (
    "dvc.repo",
    "dvc.api",
    "matplotlib.figure",
    "matplotlib.axes",
    "matplotlib.backends.backend_svg",
)


def _import_all(modules: Sequence[str], after: float, done: threading.Event) -> None:
    if done.wait(after):
        return
    # Linux keeps a nice value per thread: this one yields the cores to DVC and the stage host,
    # whose work comes first, and takes what they leave idle
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the step that needs the module meets the error, and reports it
            continue


@contextmanager
def imported_meanwhile(modules: Sequence[str], after: float = 0.0) -> Iterator[None]:
    """`modules` imported while the block runs, starting `after` seconds into it; a block that
    ends sooner leaves them to the steps that need them."""
    done = threading.Event()
    thread = threading.Thread(
        target=_import_all, args=(modules, after, done), daemon=True, name="import-ahead"
    )
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
