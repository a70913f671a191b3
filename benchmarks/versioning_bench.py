"""P2 and P3: many batches merged and versioned with DVC, as the master grows.

In: a Size. Out: for each batch, the time to merge it (`refresh_master`) and to version the master
directory (`Repo.add` through DVC's Python API, in a real DVC repository whose cache uses DVC's
default link type), the bytes the batch changed (parts rewritten plus the manifest) and the bytes
DVC's cache grew by. The naive layout is measured the same way: the master as one Parquet file,
versioned after the last two batches.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import time
from contextlib import chdir
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.data import SCHEMA, BatchSpec, rows
from benchmarks.merge_bench import Inbox, empty_master
from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.master.merge import MasterSpec, refresh_master
from mainstem.validation.columnar import ROW_GROUP_ROWS, parquet_bytes, parquet_options


def new_dvc_repo(root: Path) -> Path:
    from dvc.repo import Repo

    root.mkdir(parents=True)
    Repo.init(str(root), no_scm=True).close()
    with Repo(str(root)) as repo, repo.config.edit() as config:
        config["core"]["analytics"] = False
        config["core"]["check_update"] = False
    return root


def version(root: Path, target: str) -> float:
    """Seconds to `dvc add` the target with a fresh Repo, as a new pipeline process would."""
    from dvc.repo import Repo

    with chdir(root):
        start = time.perf_counter()
        with Repo(str(root)) as repo:
            repo.add(target)
        return time.perf_counter() - start


def cache_bytes(root: Path) -> int:
    return sum(
        (Path(d) / f).stat().st_size
        for d, _dirs, files in os.walk(root / ".dvc" / "cache")
        for f in files
    )


def inodes(master: Path) -> dict[str, tuple[int, int]]:
    if not master.is_dir():
        return {}
    return {p.name: (p.stat().st_ino, p.stat().st_size) for p in master.iterdir()}


def changed_bytes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(
        size for name, (inode, size) in after.items() if before.get(name, (0, 0))[0] != inode
    )


def run(size: Size, work: Path, results: Results) -> None:
    print(f"P2/P3: {size.growth_batches} batches of {size.growth_batch_rows:,} rows", flush=True)
    root = new_dvc_repo(work / "p2")
    master = root / "master.parquet"
    inbox = Inbox(work / "p2-inbox")
    empty = empty_master(size.part_span)
    seed = rows(np.arange(size.growth_seed_rows, dtype=np.int64), seed=500)
    inbox.add("seed", parquet_bytes(seed), seed.num_rows)
    refresh_master(master, inbox.reports, inbox.path, MasterSpec(empty, SCHEMA))
    version(root, master.name)
    master_rows = size.growth_seed_rows
    merges, versions, growth, changed = [], [], [], []
    previous = None
    for number in range(1, size.growth_batches + 1):
        if number == size.growth_batches:
            # read, not hard-linked: a second link to every part would change what DVC does
            previous = pq.ParquetDataset(master).read()
        spec = BatchSpec(
            600 + number, master_rows, size.growth_batch_rows, recent_window=size.part_span
        )
        table = spec.table()
        inbox.add(f"batch-{number:03d}", parquet_bytes(table), table.num_rows)
        before, cache_before = inodes(master), cache_bytes(root)
        start = time.perf_counter()
        refresh_master(master, inbox.reports, inbox.path, MasterSpec(empty, SCHEMA))
        merges.append(time.perf_counter() - start)
        versions.append(version(root, master.name))
        growth.append(cache_bytes(root) - cache_before)
        changed.append(changed_bytes(before, inodes(master)))
        master_rows += spec.new_rows
        if number % 10 == 0:
            print(f"  batch {number}: {master_rows:,} rows", flush=True)
    results.sample_load()
    totals = [m + v for m, v in zip(merges, versions, strict=True)]
    last = len(totals)
    results.measure("P2", f"master rows after batch {last}", master_rows, "")
    results.measure("P2", f"master parts after batch {last}", len(list(master.glob("part-*"))), "")
    for number in sorted({1, 2, last // 2, last}):
        results.measure("P2", f"batch {number}: merge", merges[number - 1])
        results.measure("P2", f"batch {number}: version (DVC add)", versions[number - 1])
    # Which parts a batch touches depends on where its keys fall against part boundaries, and
    # that pattern repeats every `cycle` batches: compare whole cycles, first against last.
    new_rows = BatchSpec(0, size.growth_seed_rows, size.growth_batch_rows).new_rows
    cycle = size.part_span // math.gcd(size.part_span, new_rows)
    window = max(1, min(cycle, last // 2))
    first, final = statistics.mean(totals[:window]), statistics.mean(totals[-window:])
    results.measure("P2", f"mean merge+version of batches 1-{window}", first)
    results.measure("P2", f"mean merge+version of batches {last - window + 1}-{last}", final)
    results.target(
        Target(
            "P2",
            f"merge+version: batch {last} ÷ batch 1",
            totals[-1] / totals[0],
            1.3,
            "at_most",
            f"{last} batches of {size.growth_batch_rows:,} rows (10% recent updates) onto a "
            f"{size.growth_seed_rows:,}-row master, growing to {master_rows:,} rows; version = "
            "DVC add of the master directory through DVC's Python API. The seed ends mid-part, "
            "so batch 1 straddles part boundaries like most batches do.",
        )
    )
    results.target(
        Target(
            "P2",
            f"merge+version: mean of the last {window} batches ÷ mean of the first {window}",
            final / first,
            1.3,
            "at_most",
            f"the same run; the pattern of parts touched repeats every {cycle} batches, so "
            "these windows hold the same mix of boundary cases.",
        )
    )
    ratios = [g / c for g, c in zip(growth, changed, strict=True)]
    results.measure("P3", "mean bytes changed per batch", statistics.mean(changed) / 1e6, "MB")
    results.measure("P3", "mean DVC cache growth per batch", statistics.mean(growth) / 1e6, "MB")
    results.target(
        Target(
            "P3",
            "DVC cache growth ÷ bytes the batch changed (worst batch)",
            max(ratios),
            1.2,
            "at_most",
            "cache growth includes DVC's directory listing; changed bytes are the rewritten "
            "parts and the manifest.",
        )
    )
    assert previous is not None
    _naive(work, previous, pq.ParquetDataset(master).read(), results)
    shutil.rmtree(root)


def _naive(work: Path, previous: pa.Table, latest: pa.Table, results: Results) -> None:
    """The same two last versions of the master, as one file each, versioned with DVC."""
    root = new_dvc_repo(work / "p3-naive")
    target = root / "master.parquet"
    times, growth = [], []
    for table in (previous, latest):
        with pq.ParquetWriter(target, SCHEMA, **parquet_options(SCHEMA)) as writer:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        before = cache_bytes(root)
        times.append(version(root, target.name))
        growth.append(cache_bytes(root) - before)
    size = target.stat().st_size
    results.measure("P3", "naive single file: size", size / 1e6, "MB")
    results.measure("P3", "naive single file: DVC cache growth per batch", growth[-1] / 1e6, "MB")
    results.measure("P3", "naive single file: version (DVC add)", times[-1])
    results.measure("P3", "naive cache growth ÷ file size", growth[-1] / size, "ratio")
    shutil.rmtree(root)
