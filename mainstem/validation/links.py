"""Resolve the image link in a row to a file of the same batch, and nothing else.

In: the link text from a row and the set of file paths the batch delivered. Out: the matching
path, or the reason the link is refused. Links are matched against the batch's own file list,
never the file system, so `..`, absolute paths and symlinks can never reach outside the batch.
Look-alike names (Unicode normalisation, invisible characters) are refused, not guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mainstem.validation.excerpts import quoted

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Link:
    path: str | None
    reason: str | None
    broken: bool = False


@dataclass(frozen=True)
class BatchFiles:
    """A batch's file paths, indexed once by their folded spelling.

    Build it once per batch: folding every path again for every link that misses would make a
    batch of many rows and many files quadratic.
    """

    paths: frozenset[str]
    by_fold: dict[str, str]

    @classmethod
    def of(cls, paths: Iterable[str]) -> BatchFiles:
        ordered = sorted(paths)
        by_fold: dict[str, str] = {}
        for path in ordered:
            by_fold.setdefault(_fold(path), path)
        return cls(frozenset(ordered), by_fold)


def resolve_link(link: str, files: BatchFiles | Collection[str]) -> Link:
    """Find `link` among `files` (paths relative to the batch, with '/' separators)."""
    if not isinstance(files, BatchFiles):
        files = BatchFiles.of(files)
    refused = _refusal(link)
    if refused is not None:
        return Link(None, refused)
    relative = link.removeprefix("./")
    if relative in files.paths:
        return Link(relative, None)
    look_alike = files.by_fold.get(_fold(relative))
    if look_alike is not None:
        return Link(
            None,
            f"the link matches {quoted(look_alike)} only if case and Unicode normalisation "
            "are ignored; use the file's exact name",
        )
    return Link(None, f"links to {quoted(relative)}, which is not in the batch", broken=True)


def _refusal(link: str) -> str | None:
    """Why `link` can name no file of any batch, judged from its text alone; None if it can."""
    if "\x00" in link:
        return "the link contains a NUL byte"
    if "\\" in link:
        return "the link uses backslashes; separate folders with '/'"
    if "://" in link:
        return "the link is a URL; images must be delivered inside the batch"
    if link.startswith("/") or _DRIVE.match(link):
        return "the link is an absolute path; use a path relative to the batch"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in link):
        return "the link contains invisible or control characters"
    parts = link.removeprefix("./").split("/")
    if ".." in parts:
        return "the link leaves the batch ('..')"
    if any(part in ("", ".") for part in parts):
        return "the link has an empty or '.' path segment"
    return None


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()
