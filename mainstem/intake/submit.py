"""Delivering a batch into the drop folder the way the protocol requires.

In: files or folders to deliver and the drop folder. Out: the files copied in, a `_MANIFEST.json`
with every file's size and sha256, and `_READY` written last, atomically. Because `_READY` comes
after every byte is on disk (fsynced), a claimant that sees it never reads a half-written file;
the manifest lets the claim prove it. Refuses while an earlier batch is still in the drop folder.
A large copy shows its progress in bytes when a person watches a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mainstem.durable import fsync_dir, storage_errors, write_bytes, write_json
from mainstem.errors import MainstemError
from mainstem.intake.delivery import MANIFEST, PROCESSING, READY, hash_file, scan
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
    leftovers, problems = scan(incoming)
    if leftovers or problems:
        first = leftovers[0][0] if leftovers else problems[0].path
        raise MainstemError(
            f"{incoming} is not empty (e.g. {first}); a producer may be writing a batch. "
            "Wait for it, or clear the drop folder"
        )
    sources = _sources(paths)
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
