"""Delivered values as reasons quote them: a short prefix and the full length, never a whole cell.

In: any value from a delivery (a cell, a link, a file name). Out: text of at most about a hundred
characters. A cell may hold megabytes, and a reason is read by a person, stored in the report and
repeated on every rejected row.
"""

from __future__ import annotations

LIMIT = 80


def shown(value: object, limit: int = LIMIT) -> str:
    """The value's text, cut to `limit` characters with its full length when longer."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def quoted(value: object, limit: int = LIMIT) -> str:
    """The value in quotes, as `shown` cuts it; the length note stays outside the quotes."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"
