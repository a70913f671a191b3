"""Atomic, durable publication of files and directories.

In: bytes, JSON-able values, or a fully staged directory. Out: the same at their final path, such
that a reader (or a process restarted after a crash) sees either the old version or the new one,
never a torn mix. Every publish fsyncs the data, renames it into place and fsyncs the directory, so
the rename itself survives a power cut. OS errors become a StorageError that names the path.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mainstem import crashpoints
from mainstem.errors import StorageError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn an OSError raised inside the block into a StorageError that says what failed."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        hint = {
            errno.ENOSPC: "the disk is full; free space and retry",
            errno.EDQUOT: "the disk quota is exhausted; free space and retry",
            errno.EIO: "the device reported an I/O error; check the disk and retry",
            errno.EACCES: "permission denied; fix the ownership or mode of the path",
            errno.EPERM: "operation not permitted; fix the ownership or mode of the path",
            errno.EROFS: "the file system is read-only",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise StorageError(f"{what}: {hint} ({exc.filename or ''})") from exc


def fsync_dir(path: Path) -> None:
    """Make the directory entries of `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding mainstem writes: sorted keys, two-space indent, final newline."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def make_dirs(path: Path) -> None:
    """Create `path` and its missing parents, each new entry made durable in its parent."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise
        fsync_dir(directory.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale_tmp(path: Path) -> None:
    """Remove the scratch files of `path` left by writers that died before renaming them."""
    for tmp in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Publish `data` at `path` atomically and durably: fsync the file, rename, fsync the dir."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with storage_errors(f"could not write {path}"):
        make_dirs(path.parent)
        clear_stale_tmp(path)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            crashpoints.reach(f"replace {path.name}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)


def write_json(path: Path, value: Any) -> None:
    """Publish `value` as canonical JSON at `path`, atomically and durably."""
    write_bytes(path, canonical_json(value))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when the file is missing, unreadable or not an object."""
    try:
        value = read_json(path)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def exchange(a: Path, b: Path) -> None:
    """Swap two directory entries in one atomic step (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def sync_tree(root: Path, durable: Collection[Path] = ()) -> None:
    """fsync every file and directory under `root`, deepest first, except the files in `durable`.

    A file is durable when its writer fsynced it, or when it is a hard link to a published file.
    Skipping those matters: on this kind of disk every fsync costs milliseconds even when the
    file is clean, so syncing a master's 100 carried-over parts cost more than merging a batch.
    """
    skip = {Path(path) for path in durable}
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            if Path(dirpath) / name not in skip:
                fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def publish_dir(staged: Path, target: Path, durable: Collection[str] = ()) -> None:
    """Replace directory `target` with the fully written directory `staged`.

    Readers see the old tree or the new one: the swap is a single rename. The old tree is removed
    afterwards; a crash before that leaves it at `staged`, which the next publish clears.
    `durable` names files directly in `staged` that need no fsync of their own (see sync_tree);
    their directory entries are made durable with the rest.
    """
    with storage_errors(f"could not publish {target}"):
        make_dirs(target.parent)
        sync_tree(staged, [staged / name for name in durable])
        crashpoints.reach(f"publish {target.name}")
        if target.exists():
            exchange(staged, target)
            fsync_dir(target.parent)
            crashpoints.reach(f"remove old {target.name}")
            shutil.rmtree(staged)
        else:
            os.rename(staged, target)
            fsync_dir(target.parent)


def clear_staging(parent: Path) -> list[Path]:
    """Remove every staging folder and stale scratch file directly in `parent`; what went.

    Only safe while no other writer can be staging there: the pipeline calls it holding the
    drop-folder lock, before `dvc repro`.
    """
    removed: list[Path] = []
    if not Path(parent).is_dir():
        return removed
    with storage_errors(f"could not clear leftovers in {parent}"):
        for entry in sorted(Path(parent).iterdir()):
            if entry.name.startswith(".") and entry.name.endswith(".staging"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
            elif entry.name.startswith(".") and ".tmp-" in entry.name:
                pid = entry.name.rsplit("-", 1)[-1]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        if removed:
            fsync_dir(Path(parent))
    return removed


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path`, clearing what a crashed earlier attempt left there."""
    with storage_errors(f"could not prepare {path}"):
        if path.exists() or path.is_symlink():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        path.mkdir(parents=True)
    return path


def staging_path(target: Path, purpose: str) -> Path:
    """The sibling path where a new version of (part of) `target` is built before publishing.

    It sits beside `target`, never inside it, so a crash cannot leave scratch files inside a
    DVC-tracked output; `.gitignore` and `.dvcignore` both skip `.*.staging`.
    """
    return target.with_name(f".{target.name}.{purpose}.staging")
