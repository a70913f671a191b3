"""P11: the cost of one more batch against a long history (10, 1,000 and 10,000 batches in full).

In: a Size (`history_batches`: 10, 1,000 and 10,000 in full; `MAINSTEM_BENCH_HISTORY=10,100` for
others) and a scratch folder. Out, for one real batch of 50 photos carried through
`mainstem process` (in this process, its DVC commands as their own processes) in a workspace that
already holds each history: the DVC time (`dvc repro merge` and `dvc push`), the bytes the DVC
cache and the remote grew by, the bytes the batch itself added to the workspace's outputs, the
merge stage on its own, `mainstem status` and the pipeline page; each time in wall clock and in
CPU time; each figure at the larger histories as a ratio to its value at the smallest.

The history is built cheaply, never by running the pipeline thousands of times: one real batch
seeds the workspace, then a HistoryBuilder writes the other batches' files straight into the
workspace in the layout the pipeline uses (each batch with 50 small photos of its own in its raw
pack and in its image pack, the same bytes the pipeline would write), links them into the local
DVC remote, one `dvc repro merge` applies them to the master, and `git fast-import` writes one
lineage commit per batch (`status` and the pipeline page read lineage commits, so each batch
gets its own). The index lines of the whole history go into git in one more commit: what a
batch costs depends on how many files git tracks, not on which commit added them. The layout
lives in the builder alone: another storage layout is measured by passing another builder to
`measure_histories`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from unittest.mock import patch

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.commands import dvc, git, tool_env
from mainstem.durable import canonical_json, read_json
from mainstem.flow import batch as batchflow
from mainstem.flow.lineage import AUTHOR, BatchRecord
from mainstem.flow.workspace import configure_remote, create_workspace, source_root
from mainstem.intake.delivery import DeliveredFile
from mainstem.intake.ingest import open_raw_batch
from mainstem.intake.raw_history import PastBatch
from mainstem.intake.raw_store import (
    BATCH_FILE,
    FILES_DIR,
    RawRecord,
    dvc_cache_dir,
    last_sequence,
    pack_header,
    record_of,
    write_records,
)
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import Params, load_params
from mainstem.validation.image_pack import MEMBER_DIR
from mainstem.validation.layout import (
    ACCEPTED,
    IMAGE_PACK,
    REJECTED,
    REPORT,
    REPORT_HTML,
    ValidatedRecord,
    read_report,
    record_at,
    result_file,
    validated_index,
)
from mainstem.validation.layout import record_of as validated_record_of
from mainstem.validation.store import totals_after

HISTORY_ENV = "MAINSTEM_BENCH_HISTORY"
PHOTOS = 50
BOUND_RATIO = 1.3
BOUND_CACHE = 1.2
# merge and status take under a second, mostly interpreter start-up: a tenth of a second of a
# neighbour's load moves their ratio by 0.1, so each is the best of several runs
BEST_OF = 5
_HISTORY_PHOTO_BYTES = 1024  # history photos are small: DVC's cost is in their count
_USTAR_NAME = 100  # the longest name a plain ustar header holds
_EPOCH = 1_767_225_600  # commit times of the synthetic history: fixed, one batch every 5 minutes


def history_sizes(size: Size) -> tuple[int, ...]:
    """The history sizes to measure: MAINSTEM_BENCH_HISTORY (comma-separated) or the Size's."""
    raw = os.environ.get(HISTORY_ENV, "").strip()
    if not raw:
        return size.history_batches
    try:
        sizes = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise SystemExit(f"{HISTORY_ENV}={raw!r}: give batch counts like 10,1000,10000") from None
    if len(sizes) < 2 or sizes[0] < 1:
        raise SystemExit(f"{HISTORY_ENV}={raw!r}: give at least two counts of 1 or more")
    return sizes


class HistoryBuilder(Protocol):
    """Writes a workspace's history of batches in one storage layout."""

    objects: list[str]  # md5 of every file the builder put in the DVC cache

    def extend(self, params: Params, batches: int) -> list[BatchRecord]:
        """Add batches until the workspace holds `batches`; the lineage record of each added."""
        ...


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _photo(number: int, index: int) -> bytes:
    return hashlib.shake_256(f"history photo {number} {index}".encode()).digest(
        _HISTORY_PHOTO_BYTES
    )


class TarWriter:
    """The bytes `tarfile` writes for members with `pack_header`'s fixed headers, at a fraction
    of its cost: a member's header depends only on its name and size, so one header is built
    per name length and size, and each member gets a copy with its name and checksum put in.
    Names longer than a ustar name field (or not ASCII) take tarfile's own path.
    tests/unit/test_history_builder.py checks the bytes against `pack_bytes` and
    `image_pack_bytes`."""

    def __init__(self) -> None:
        self._templates: dict[tuple[int, int], bytes] = {}

    def _header(self, name: str, size: int) -> bytes:
        encoded = name.encode()
        if len(encoded) > _USTAR_NAME or not name.isascii():
            return pack_header(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        key = (len(encoded), size)
        template = self._templates.get(key)
        if template is None:
            blank = pack_header("x" * len(encoded), size)
            template = blank.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            self._templates[key] = template
        header = bytearray(template)
        header[: len(encoded)] = encoded
        header[148:156] = b" " * 8
        header[148:155] = b"%06o\0" % sum(header)
        return bytes(header)

    def tar(self, members: list[tuple[str, bytes]]) -> bytes:
        """A tar of `members` (name, bytes), in the order given."""
        chunks = []
        offset = 0
        for name, data in members:
            header = self._header(name, len(data))
            padding = -len(data) % tarfile.BLOCKSIZE
            chunks += [header, data, b"\0" * padding]
            offset += len(header) + len(data) + padding
        offset += 2 * tarfile.BLOCKSIZE
        chunks.append(b"\0" * (2 * tarfile.BLOCKSIZE + -offset % tarfile.RECORDSIZE))
        return b"".join(chunks)

    def raw_pack(self, meta: dict[str, object], files: dict[str, bytes]) -> bytes:
        """What `raw_store.pack_bytes(meta, files)` returns."""
        names = sorted(files)
        listed = [DeliveredFile(n, len(files[n]), _digest(files[n])).to_json() for n in names]
        listing = canonical_json({**meta, "files": listed})
        members = [(BATCH_FILE, listing)]
        members += [(f"{FILES_DIR}/{name}", files[name]) for name in names]
        return self.tar(members)

    def image_pack(self, images: dict[str, bytes]) -> bytes:
        """What `image_pack.image_pack_bytes(images)` returns."""
        return self.tar([(f"{MEMBER_DIR}/{name}", images[name]) for name in sorted(images)])


@dataclass
class PackedRawAndValidated:
    """The layout of issue 19: one raw pack per batch in the DVC cache and two raw index records;
    per batch, its five validated files (results, report, one pack of its canonical images) in
    the DVC cache and two validated index records. Every synthetic batch copies the first (real)
    batch's table and validated files, and has photos of its own in the raw pack and in its image
    pack. The master is left to the merge stage, which applies the new batches (the same rows
    each time) in one run.

    The files are written as the pipeline would leave them (the same bytes `add_past_batches`
    and the validate stage write; TarWriter builds the packs), plainly, not fsynced: a history to
    build again, never lineage. Files shared by every batch (its results tables and report page)
    are written once. `objects` collects the md5 of each DVC cache file written, for the caller
    to put in the remote."""

    template: str  # the id of the real batch the others copy
    added: int = field(default=1)
    objects: list[str] = field(default_factory=list)
    _tar: TarWriter = field(default_factory=TarWriter)

    def _template_files(self, params: Params) -> dict[str, bytes]:
        raw_dir = params.ingest.raw_dir
        record = record_of(raw_dir, self.template)
        assert record is not None, f"the template batch {self.template} is not in the raw index"
        with open_raw_batch(raw_dir, params.root, record) as raw:
            return {f.path: raw.file_path(f.path).read_bytes() for f in raw.files}

    def _cache(self, cache: Path, data: bytes) -> str:
        md5 = _md5(data)
        target = cache / "files" / "md5" / md5[:2] / md5[2:]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self.objects.append(md5)
        return md5

    def extend(self, params: Params, batches: int) -> list[BatchRecord]:
        raw_dir, validated = params.ingest.raw_dir, params.validate.validated_dir
        cache = dvc_cache_dir(params.root)
        template_files = self._template_files(params)
        template = validated_record_of(validated, self.template)
        report = read_report(validated, self.template)
        assert template is not None, f"the template batch {self.template} is not validated"
        assert report is not None, f"the template batch {self.template} has no report"
        shared = {
            name: self._cache(
                cache, result_file(validated, template, name, params.root).read_bytes()
            )
            for name in (ACCEPTED, REJECTED, REPORT_HTML)
        }
        master_rows = int(read_json(params.merge.metrics_file)["master_rows"])
        sequence = last_sequence(raw_dir)
        before = record_at(validated, sequence)
        totals = before.totals if before else {}
        records = []
        raw_lines: list[RawRecord] = []
        validated_lines: list[dict[str, object]] = []
        while self.added < batches:
            self.added += 1
            sequence += 1
            number = self.added
            name = f"history-{number:06d}"
            files = {
                path: _photo(number, index) if path.startswith("images/") else data
                for index, (path, data) in enumerate(sorted(template_files.items()))
            }
            past = PastBatch(name, files)
            batch_id = past.batch_id
            pack = self._tar.raw_pack(
                {"batch_id": batch_id, "sequence": sequence, "name": name}, files
            )
            raw = RawRecord(
                batch_id, sequence, name, self._cache(cache, pack), _digest(pack), len(pack)
            )
            raw_lines.append(raw)
            images = {}
            for index in range(len(report["stored_images"])):
                data = _photo(-number, index)
                digest = _digest(data)
                images[f"{digest[:2]}/{digest}.png"] = data
            copied = {**report, "batch_id": batch_id, "name": name, "sequence": sequence}
            copied["stored_images"] = sorted(images)
            md5s = {
                **shared,
                REPORT: self._cache(cache, canonical_json(copied)),
                IMAGE_PACK: self._cache(cache, self._tar.image_pack(images)),
            }
            totals = totals_after(totals, copied)
            record = ValidatedRecord(
                batch_id,
                sequence,
                {**template.summary, "name": name},
                dict(sorted(md5s.items())),
                tuple(sorted(images)),
                totals,
                template.fingerprint,
            )
            validated_lines.append(record.to_json())
            records.append(BatchRecord.from_report(copied, master_rows))
        write_records(raw_dir, raw_lines, durable=False)
        validated_index(validated).put(validated_lines, durable=False)
        return records


Builder = Callable[[Params, str], HistoryBuilder]


def todays_layout(_params: Params, template: str) -> HistoryBuilder:
    return PackedRawAndValidated(template)


def _fast_import(root: Path, records: list[BatchRecord], first: int) -> None:
    """One lineage commit per record on the current branch, each with its master metrics."""
    branch = git(["symbolic-ref", "HEAD"], root).stdout.strip()
    parent = git(["rev-parse", "HEAD"], root).stdout.strip()
    chunks = []
    for offset, batch in enumerate(records):
        number = first + offset
        metrics = {
            "batches_merged": number,
            "batches_rejected": 0,
            "contract": batch.contract,
            "last_batch_id": batch.batch_id,
            "master_parts": 1,
            "master_rows": batch.master_rows,
            "rows_rejected_total": 0,
        }
        blob = (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode()
        message = batch.message().encode()
        stamp = _EPOCH + 300 * number
        chunks.append(
            f"commit {branch}\n"
            f"committer mainstem pipeline <pipeline@mainstem.invalid> {stamp} +0000\n"
            f"data {len(message)}\n".encode()
            + message
            + (f"\nfrom {parent}\n" if offset == 0 else "\n").encode()
            + f"M 100644 inline metrics/master.json\ndata {len(blob)}\n".encode()
            + blob
            + b"\n"
        )
    if chunks:
        subprocess.run(
            ["git", "fast-import", "--quiet"],
            cwd=root,
            input=b"".join(chunks),
            env=tool_env(),
            check=True,
        )
        git(["reset", "--quiet"], root)


def _to_remote(cache: Path, remote: Path, objects: list[str]) -> None:
    """Put cache objects in the (local) DVC remote as `dvc push` would, by hard link: the remote
    of a real history holds every batch's files, not only those the last dvc.lock names."""
    for md5 in objects:
        relative = Path("files", "md5", md5[:2], md5[2:])
        target = remote / relative
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(cache / relative, target)
        except OSError:
            shutil.copyfile(cache / relative, target)


def _tree_bytes(path: Path) -> int:
    return sum((Path(d) / f).stat().st_size for d, _dirs, files in os.walk(path) for f in files)


def _files(paths: list[Path]) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime in ns, size) of every file under `paths`, by path: a file rewritten can get
    the inode number of the one it replaced, never its mtime as well."""
    found = {}
    for top in paths:
        for d, _dirs, files in os.walk(top):
            for name in files:
                stat = (Path(d) / name).stat()
                found[os.path.join(d, name)] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


@dataclass
class Workspace:
    root: Path
    remote: Path
    builder: HistoryBuilder
    batches: int = 1


def seed(work: Path, build: Builder) -> Workspace:
    """A workspace whose first batch went through the real pipeline."""
    root = create_workspace(work / "workspace", source_root())
    remote = Path(configure_remote(root))
    params = load_params(root)
    spec = BatchSpec(1, 0, PHOTOS)
    folder = make_batch(work / "deliveries" / spec.name, spec)
    submit([folder], params.ingest.incoming_dir, spec.name)
    done = batchflow.process_next_batch(root)
    assert done.report is not None, done
    assert done.report["status"] == "accepted", done.report
    return Workspace(root, remote, build(params, str(done.report["batch_id"])))


def grow(workspace: Workspace, batches: int) -> float:
    """Extend the history to `batches`: files, DVC versions and lineage; the seconds it took."""
    start = time.perf_counter()
    root = workspace.root
    params = load_params(root)
    records = workspace.builder.extend(params, batches)
    _to_remote(dvc_cache_dir(root), workspace.remote, workspace.builder.objects)
    workspace.builder.objects.clear()
    _fast_import(root, records[:-1], workspace.batches + 1)
    # the merge applies the history now: the index is git's, so DVC sees no new dependency
    dvc(["repro", "--quiet", "--force", "--single-item", batchflow.REPRO_TARGET], root)
    dvc(["push", "--quiet"], root)
    if records:
        # the history's index records go to git unsynced (a history to build again): the
        # pipeline's own commits fsync every object, which here would be tens of thousands
        paths = [str(p.relative_to(root)) for p in batchflow.lineage_paths(params) if p.exists()]
        git(["add", "--", *paths], root)
        git(
            [
                *AUTHOR,
                "-c",
                "gc.auto=0",
                "commit",
                "--no-verify",
                "--quiet",
                "-m",
                records[-1].message(),
            ],
            root,
        )
        # tens of thousands of loose objects would start git's automatic gc in the background
        # of the measured batch: pack them now, in the foreground, as a workspace whose gc has run
        git(["gc", "--quiet"], root)
    workspace.batches = batches
    return time.perf_counter() - start


def _cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (DVC, git, stages)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Spent:
    """Wall-clock and CPU seconds, summed over what was timed under one name."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def _timing(spent: dict[str, Spent], name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), _cpu()
    try:
        yield
    finally:
        total = spent.setdefault(name, Spent())
        total.wall += time.perf_counter() - wall
        total.cpu += _cpu() - cpu


@contextmanager
def _timed_dvc(spent: dict[str, Spent]) -> Iterator[None]:
    real = batchflow.run_dvc

    def timed(
        root: Path, args: list[str], batch_id: str, extra_env: Mapping[str, str] | None = None
    ) -> str:
        with _timing(spent, args[0]):
            return real(root, args, batch_id, extra_env)

    real_push = batchflow.push_batch

    def timed_push(root: Path, batch_id: str) -> str:
        with _timing(spent, "push"):
            return real_push(root, batch_id)

    with (
        patch.object(batchflow, "run_dvc", timed),
        patch.object(batchflow, "push_batch", timed_push),
    ):
        yield


def _best(runs: list[Spent]) -> Spent:
    """The least wall-clock and the least CPU time of several runs (each its own minimum)."""
    return Spent(min(r.wall for r in runs), min(r.cpu for r in runs))


def _best_of(count: int, command: list[str], root: Path) -> Spent:
    runs = []
    for _ in range(count):
        spent: dict[str, Spent] = {}
        with _timing(spent, "run"):
            subprocess.run(command, cwd=root, env=tool_env(), capture_output=True, check=True)
        runs.append(spent["run"])
    return _best(runs)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _merge_alone(params: Params, before: Path, count: int) -> Spent:
    """The merge stage's own time for the batch, best of `count`: each time the master it started
    from is put back, the stage command runs alone, and it must write the master the pipeline
    wrote."""
    master = params.merge.master_dir
    after = master.with_name("master-after")
    master.rename(after)
    runs = []
    try:
        for _ in range(count):
            shutil.rmtree(master, ignore_errors=True)
            shutil.copytree(before, master)
            spent: dict[str, Spent] = {}
            with _timing(spent, "merge"):
                subprocess.run(
                    [sys.executable, "-m", "stages.merge"],
                    cwd=params.root,
                    env=tool_env(),
                    capture_output=True,
                    check=True,
                )
            runs.append(spent["merge"])
            same = _contents(master) == _contents(after)
            assert same, "the merge stage run alone wrote another master than the pipeline did"
    finally:
        shutil.rmtree(master, ignore_errors=True)
        after.rename(master)
    return _best(runs)


def one_more_batch(workspace: Workspace, work: Path) -> dict[str, float]:
    """Carry one real batch of PHOTOS photos through `mainstem process`; what it cost."""
    root = workspace.root
    params = load_params(root)
    number = workspace.batches + 1
    spec = BatchSpec(number, 1_000_000 + PHOTOS * number, PHOTOS)
    folder = make_batch(work / "deliveries" / spec.name, spec)
    submit([folder], params.ingest.incoming_dir, spec.name)
    outputs = [params.ingest.raw_dir, params.validate.validated_dir, params.merge.master_dir]
    before_files = _files(outputs)
    master_before = work / "master-before"
    shutil.rmtree(master_before, ignore_errors=True)
    shutil.copytree(params.merge.master_dir, master_before)
    cache, remote = _tree_bytes(root / ".dvc" / "cache"), _tree_bytes(workspace.remote)
    spent: dict[str, Spent] = {}
    with _timing(spent, "process"), _timed_dvc(spent):
        done = batchflow.process_next_batch(root)
    assert done.report is not None, done
    assert done.report["status"] == "accepted", done.report
    workspace.batches = number
    added = sum(
        size
        for path, (inode, mtime, size) in _files(outputs).items()
        if before_files.get(path, (0, 0, 0))[:2] != (inode, mtime)
    )
    mainstem = [sys.executable, "-m", "mainstem.cli"]
    repro, push = spent.get("repro", Spent()), spent.get("push", Spent())
    merge = _merge_alone(params, master_before, BEST_OF)
    status = _best_of(BEST_OF, [*mainstem, "status", "--no-airflow", "--json"], root)
    page = _best_of(1, [*mainstem, "report", "--pipeline"], root)
    return {
        "process": spent["process"].wall,
        "dvc": repro.wall + push.wall,
        "dvc cpu": repro.cpu + push.cpu,
        "dvc repro": repro.wall,
        "dvc push": push.wall,
        "batch bytes": added,
        "cache growth": _tree_bytes(root / ".dvc" / "cache") - cache,
        "push size": _tree_bytes(workspace.remote) - remote,
        "merge": merge.wall,
        "merge cpu": merge.cpu,
        "status": status.wall,
        "status cpu": status.cpu,
        "pipeline page": page.wall,
    }


# each time twice: wall clock, as the issue asks, and CPU time (the process and the children it
# waited for), which a machine shared with other work inflates far less (docs/long-history.md)
FIGURES = (
    ("dvc", "DVC time (dvc repro merge + dvc push)", "s"),
    ("dvc cpu", "DVC CPU time (dvc repro merge + dvc push)", "s"),
    ("cache growth", "DVC cache growth", "MB"),
    ("push size", "bytes pushed to the remote", "MB"),
    ("merge", "merge stage on its own", "s"),
    ("merge cpu", "merge stage on its own, CPU time", "s"),
    ("status", "mainstem status", "s"),
    ("status cpu", "mainstem status, CPU time", "s"),
)
SHOWN = (
    *FIGURES,
    ("process", "mainstem process, whole batch", "s"),
    ("dvc repro", "dvc repro merge", "s"),
    ("dvc push", "dvc push", "s"),
    ("batch bytes", "bytes the batch added to the outputs", "MB"),
    ("pipeline page", "mainstem report --pipeline", "s"),
)


def measure_histories(
    size: Size, work: Path, results: Results, build: Builder = todays_layout
) -> dict[int, dict[str, float]]:
    """Build each history in turn in one workspace and measure one more batch at each."""
    sizes = history_sizes(size)
    print(f"P11: one batch of {PHOTOS} photos after {', '.join(map(str, sizes))} batches")
    workspace = seed(work / "p11", build)
    measured: dict[int, dict[str, float]] = {}
    for batches in sizes:
        built = grow(workspace, batches)
        results.measure("P11", f"build a {batches:,}-batch history (setup)", built)
        results.sample_load()
        measured[batches] = one_more_batch(workspace, work / "p11")
        for key, what, unit in SHOWN:
            value = measured[batches][key]
            results.measure("P11", f"after {batches:,} batches: {what}", _in(value, unit), unit)
    _targets(measured, results)
    shutil.rmtree(work / "p11", ignore_errors=True)
    return measured


def _in(value: float, unit: str) -> float:
    return value / 1e6 if unit == "MB" else value


def _targets(measured: dict[int, dict[str, float]], results: Results) -> None:
    smallest, *larger = sorted(measured)
    base = measured[smallest]
    for batches in larger:
        for key, what, _unit in FIGURES:
            ratio = measured[batches][key] / base[key] if base[key] else None
            results.target(
                Target(
                    "P11",
                    f"{what}: after {batches:,} batches ÷ after {smallest:,}",
                    ratio,
                    BOUND_RATIO,
                    "at_most",
                    f"one batch of {PHOTOS} photos through `mainstem process` (in process; DVC "
                    "as its own processes, local remote) on a synthetic history of batches of "
                    f"{PHOTOS} photos each; merge and status best of {BEST_OF}, one run otherwise.",
                )
            )
    largest = measured[max(measured)]
    results.target(
        Target(
            "P11",
            f"DVC cache growth ÷ the batch's own bytes, after {max(measured):,} batches",
            largest["cache growth"] / largest["batch bytes"],
            BOUND_CACHE,
            "at_most",
            "the batch's own bytes: files it added or rewrote in the raw, validated and master "
            "outputs (by inode), so DVC's directory listings are what exceeds 1.",
        )
    )


def run(size: Size, work: Path, results: Results) -> None:
    measure_histories(size, work, results)
