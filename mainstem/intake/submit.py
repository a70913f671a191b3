"""Delivering a batch into the drop folder the way the protocol requires.

In: files or folders to deliver and the drop folder. Out: the files copied in, a `_MANIFEST.json`
with every file's size and sha256, and `_READY` written last, atomically. Because `_READY` comes
after every byte is on disk (fsynced), a claimant that sees it never reads a half-written file;
the manifest lets the claim prove it. `submit` fills one folder and refuses while an earlier batch
is still in it; `submit_to_queue` gives each batch a sub-folder of its own, so a producer never
waits. A large copy shows its progress in bytes when a person watches a terminal.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from mainstem.durable import fsync_dir, storage_errors, write_bytes, write_json
from mainstem.errors import MainstemError
from mainstem.intake.delivery import (
    CLAIM_TMP_PREFIX,
    MANIFEST,
    PROCESSING,
    READY,
    SUBMIT_TMP_PREFIX,
    hash_file,
    scan,
)
from mainstem.intake.queue import queue_folders
from mainstem.progress import progress

_CHUNK = 1 << 20


def _sources(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, path inside the batch) for every file under `paths`."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                (file, file.relative_to(path).as_posix())
                for file in sorted(path.rglob("*"))
                if file.is_file()
            )
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise MainstemError(f"{path} is not a file or folder")
    names = [name for _file, name in found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise MainstemError(f"two inputs would both be delivered as {clashes[0]}")
    control = [n for n in names if n in (READY, PROCESSING, MANIFEST)]
    if control:
        raise MainstemError(f"{control[0]} is a control file name of the drop folder")
    return found


def _copy(source: Path, target: Path, copied: Callable[[int], object]) -> None:
    """Copy `source` to `target` and fsync it, reporting each chunk's size to `copied`."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            copied(len(chunk))
        writer.flush()
        os.fsync(writer.fileno())


def submit(paths: list[Path], incoming: Path, name: str | None = None) -> dict[str, object]:
    """Copy a batch into the drop folder, write its manifest, then `_READY`; the manifest."""
    incoming.mkdir(parents=True, exist_ok=True)
    if (incoming / READY).exists() or (incoming / PROCESSING).exists():
        marker = READY if (incoming / READY).exists() else PROCESSING
        raise MainstemError(
            f"{incoming} still holds a batch ({marker} is present); wait until the pipeline "
            "has released it, then submit again"
        )
    leftovers, problems = scan(incoming, queue_folders(incoming))
    if leftovers or problems:
        first = leftovers[0][0] if leftovers else problems[0].path
        raise MainstemError(
            f"{incoming} is not empty (e.g. {first}); a producer may be writing a batch. "
            "Wait for it, or clear the drop folder"
        )
    return _fill(_sources(paths), incoming, name)


def _fill(sources: list[tuple[Path, str]], incoming: Path, name: str | None) -> dict[str, object]:
    """Copy `sources` into the empty folder `incoming`, then the manifest, then `_READY`."""
    if not sources:
        raise MainstemError("nothing to submit: no files under the given paths")
    files = []
    total = sum(source.stat().st_size for source, _rel in sources)
    with (
        storage_errors(f"could not deliver into {incoming}"),
        progress(total, "submit", unit="B", scale=True) as bar,
    ):
        for source, rel in sources:
            target = incoming / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy(source, target, bar.update)
            size, sha = hash_file(target)
            files.append({"path": rel, "size": size, "sha256": sha})
        for directory in {(incoming / rel).parent for _s, rel in sources}:
            fsync_dir(directory)
        manifest: dict[str, object] = {"name": name, "files": files}
        write_json(incoming / MANIFEST, manifest)
        write_bytes(incoming / READY, b"")
    return manifest


def entry_name(paths: list[Path], name: str | None) -> str:
    """The queue entry's folder name: the batch's name, else the first input's name."""
    chosen = name if name is not None else (paths[0].stem if paths else "")
    bad = (
        not chosen
        or chosen in {".", ".."}
        or "/" in chosen
        or "\0" in chosen
        or chosen.startswith((".", "_"))
        or chosen.startswith((CLAIM_TMP_PREFIX, SUBMIT_TMP_PREFIX))
    )
    if bad:
        raise MainstemError(
            f"{chosen!r} cannot name a batch's folder in the drop folder: give --name a name "
            "without '/' that starts with neither '.' nor '_'"
        )
    return chosen


def _place(staging: Path, incoming: Path, name: str) -> str:
    """Rename the finished `staging` folder to `incoming/<name>` (or `<name>.2`, ...): the
    entry appears whole, `_READY` included. The empty folder made first reserves the name, so two
    producers of the same name each get a folder of their own."""
    for number in range(1, 10_000):
        entry = name if number == 1 else f"{name}.{number}"
        try:
            (incoming / entry).mkdir()
        except FileExistsError:
            continue
        os.rename(staging, incoming / entry)
        fsync_dir(incoming)
        return entry
    raise MainstemError(f"{incoming} already holds 9,999 batches named {name}; choose another name")


def submit_to_queue(
    paths: list[Path], incoming: Path, name: str | None = None
) -> tuple[str, dict[str, object]]:
    """Deliver a batch as a queue entry of its own, `incoming/<name>/`; (the entry, its manifest).

    The batch is written into a scratch folder (which no claim looks at) and renamed into place
    once its `_READY` is on disk, so other producers and the claim never wait for each other.
    """
    entry = entry_name(paths, name)
    sources = _sources(paths)
    incoming.mkdir(parents=True, exist_ok=True)
    staging = incoming / f"{SUBMIT_TMP_PREFIX}{entry}-{socket.gethostname()}-{os.getpid()}"
    with storage_errors(f"could not deliver into {incoming}"):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            manifest = _fill(sources, staging, name if name is not None else entry)
            placed = _place(staging, incoming, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return placed, manifest
