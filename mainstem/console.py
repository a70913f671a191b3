"""How mainstem's entry points talk to a person: log format, and errors without tracebacks.

In: an entry point's main function. Out: its exit status. A MainstemError (bad input, a full disk,
a missing contract) prints one line saying what to fix and exits 1; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_entry(main: Callable[[], object], name: str, level: int = logging.INFO) -> int:
    """Run `main`, turning operator-facing errors into a message and exit status 1.

    Returns what `main` returned when it is an exit status (an int), else 0.
    """
    from mainstem.errors import MainstemError

    configure_logging(level)
    try:
        result = main()
    except MainstemError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
