"""What a producer delivered into the drop folder, read without trusting it.

In: the drop folder path. Out: a Delivery, the list of its files with sizes and sha256, and the
batch id derived from that content; or the problems that make it unacceptable (symlinks, FIFOs,
devices, hardlinks to files outside the batch, names that are not valid UTF-8). Files are opened
with O_NOFOLLOW | O_NONBLOCK and checked with fstat, so a FIFO cannot hang the reader and a symlink
swapped in after the scan is refused. An optional `_MANIFEST.json` from the producer is checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

READY = "_READY"
PROCESSING = "_PROCESSING"
MANIFEST = "_MANIFEST.json"
CONTROL_FILES = frozenset({READY, PROCESSING, MANIFEST})
CLAIM_TMP_PREFIX = ".claim-"
# `mainstem submit` writes a queue entry here first, then renames it into place whole.
SUBMIT_TMP_PREFIX = ".submit-"
TABLE_SUFFIXES = frozenset({".csv", ".parquet"})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DeliveredFile:
    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": printable(self.path), "reason": self.reason}

    def describe(self) -> str:
        return f"{printable(self.path)}: {self.reason}"


def printable(path: str) -> str:
    """A path as text that can be printed and stored, even if its bytes are not UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ProducerManifest:
    name: str | None
    files: dict[str, tuple[int, str]] | None
    problem: str | None = None


@dataclass(frozen=True)
class Delivery:
    files: tuple[DeliveredFile, ...]
    problems: tuple[Problem, ...]
    manifest: ProducerManifest

    @property
    def name(self) -> str | None:
        return self.manifest.name

    @property
    def batch_id(self) -> str:
        return batch_id_of(self.files, self.problems)

    @property
    def tables(self) -> tuple[DeliveredFile, ...]:
        return tuple(f for f in self.files if is_table(f.path))

    def ticket(self) -> dict[str, object]:
        """The claim record: content only, so equal content gives an equal ticket.

        It is committed with every batch, so it names the content (the batch id is its hash) and
        sums it up; the per-file list is `file_list()`, kept in the raw snapshot.
        """
        return {
            "batch_id": self.batch_id,
            "name": self.name,
            "file_count": len(self.files),
            "bytes": sum(f.size for f in self.files),
        }

    def file_list(self) -> dict[str, object]:
        """Every delivered file with its size and sha256, under the batch id they hash to."""
        return {"batch_id": self.batch_id, "files": [f.to_json() for f in self.files]}


def is_table(path: str) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def batch_id_of(files: Iterable[DeliveredFile], problems: Iterable[Problem] = ()) -> str:
    """A batch id from content: table bytes (not their names), other files by path and bytes.

    Tables may be renamed without changing the data they carry; images are referenced by path
    from the rows, so their paths are part of what the batch says.
    """
    files = list(files)
    identity = {
        "tables": sorted(f.sha256 for f in files if is_table(f.path)),
        "files": sorted([f.path, f.sha256] for f in files if not is_table(f.path)),
        "problems": sorted([p.path, p.reason] for p in problems),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def open_regular(path: Path) -> int:
    """Open `path` for reading only if it is a regular file reached without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def hash_file(path: Path) -> tuple[int, str]:
    """Size and sha256 of the regular file at `path`."""
    digest = hashlib.sha256()
    size = 0
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _is_control(rel: str) -> bool:
    top_level = "/" not in rel
    return rel in CONTROL_FILES or (
        top_level and rel.startswith((CLAIM_TMP_PREFIX, SUBMIT_TMP_PREFIX))
    )


def entry_dir(incoming: Path, entry: str) -> Path:
    """The folder of the queue entry `entry`; the drop folder itself for the root entry ("")."""
    return incoming / entry if entry else incoming


def holds_batch(folder: Path) -> bool:
    """Whether `folder` is a queue entry of its own: it holds `_READY` or `_MANIFEST.json`."""
    return any(os.path.lexists(folder / name) for name in (READY, MANIFEST))


def scan(
    incoming: Path, apart: frozenset[str] = frozenset()
) -> tuple[list[tuple[str, os.stat_result]], list[Problem]]:
    """Walk the drop folder without following links; regular files and problems, sorted.

    Top-level folders named in `apart` are queue entries of their own, not part of this batch.
    """
    found: list[tuple[str, os.stat_result]] = []
    problems: list[Problem] = []
    pending = [incoming]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                full = Path(entry.path)
                rel = full.relative_to(incoming).as_posix()
                if _is_control(rel) or rel in apart:
                    continue
                info = entry.stat(follow_symlinks=False)
                if printable(rel) != rel:
                    problems.append(Problem(rel, "file name is not valid UTF-8"))
                elif stat.S_ISDIR(info.st_mode):
                    pending.append(full)
                elif stat.S_ISREG(info.st_mode):
                    found.append((rel, info))
                else:
                    problems.append(Problem(rel, f"{_kind(info.st_mode)}; only regular files"))
    found.sort(key=lambda item: item[0])
    problems.extend(_outside_hardlinks(found))
    problems.sort(key=lambda p: (p.path, p.reason))
    return found, problems


def _outside_hardlinks(found: list[tuple[str, os.stat_result]]) -> list[Problem]:
    inside: dict[tuple[int, int], int] = {}
    for _rel, info in found:
        inside[(info.st_dev, info.st_ino)] = inside.get((info.st_dev, info.st_ino), 0) + 1
    return [
        Problem(rel, "a hardlink to a file outside the batch")
        for rel, info in found
        if info.st_nlink > inside[(info.st_dev, info.st_ino)]
    ]


def read_delivery(incoming: Path, apart: frozenset[str] = frozenset()) -> Delivery:
    """Scan and hash everything the producer delivered (leaving out the folders in `apart`)."""
    if not incoming.is_dir():
        return Delivery((), (), ProducerManifest(None, None))
    found, problems = scan(incoming, apart)
    files: list[DeliveredFile] = []
    for rel, _info in found:
        try:
            size, sha = hash_file(incoming / rel)
        except OSError as exc:
            problems.append(Problem(rel, f"cannot be read: {exc.strerror or exc}"))
            continue
        files.append(DeliveredFile(rel, size, sha))
    problems.sort(key=lambda p: (p.path, p.reason))
    return Delivery(tuple(files), tuple(problems), load_manifest(incoming))


def load_manifest(incoming: Path) -> ProducerManifest:
    """The producer's `_MANIFEST.json`, if any: {"name": ..., "files": [{path, size, sha256}]}."""
    path = incoming / MANIFEST
    if not os.path.lexists(path):  # a dangling symlink is a bad manifest, not a missing one
        return ProducerManifest(None, None)
    try:
        fd = open_regular(path)
        with os.fdopen(fd, "rb") as handle:
            raw = json.loads(handle.read(10_000_000))
        name = raw.get("name")
        files = {
            str(item["path"]): (int(item["size"]), str(item["sha256"]).lower())
            for item in raw["files"]
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return ProducerManifest(None, None, f"{MANIFEST} is unreadable or malformed: {exc}")
    return ProducerManifest(str(name) if name is not None else None, files)


def manifest_mismatches(delivery: Delivery) -> list[str]:
    """Where the delivered files differ from what the producer's manifest promises."""
    manifest = delivery.manifest
    if manifest.problem:
        return [manifest.problem]
    if manifest.files is None:
        return []
    actual = {f.path: (f.size, f.sha256) for f in delivery.files}
    issues = []
    for path, (size, sha) in sorted(manifest.files.items()):
        if path not in actual:
            issues.append(f"{path}: listed in {MANIFEST} but not delivered")
        elif actual[path][0] != size:
            issues.append(f"{path}: size {actual[path][0]} != {size} in {MANIFEST}")
        elif actual[path][1] != sha:
            issues.append(f"{path}: sha256 differs from {MANIFEST}")
    issues.extend(
        f"{path}: delivered but not listed in {MANIFEST}"
        for path in sorted(set(actual) - set(manifest.files))
    )
    return issues
