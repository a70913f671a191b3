"""Upsert validated batches into the master, touching only the parts their keys fall in.

In: the current master manifest, the batches to apply (in sequence order) and the partitioning.
Out: the new manifest and the rewritten parts. Within the pending batches a later batch wins for a
key (last write wins, by batch order); against the master, a batch's row replaces the stored row.
The work is proportional to the parts the batch touches, not to the master: each touched part is
read, upserted, sorted by key and rewritten (several at once, two per core); every other part is
carried over unchanged as a hard link. A part's bytes depend only on its rows, so applying batches
one at a time and rebuilding from all of them at once give the same files.
Applying a batch that is already recorded is a no-op, so a crash and a re-run apply rows once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mainstem import crashpoints
from mainstem.durable import fresh_dir, publish_dir, staging_path, storage_errors, write_json
from mainstem.errors import MainstemError
from mainstem.fingerprint import fingerprint
from mainstem.intake.raw_store import last_sequence
from mainstem.master.batch_log import BatchSummary, stage_log
from mainstem.master.parts import (
    MANIFEST,
    AppliedBatch,
    Manifest,
    Partitioning,
    read_manifest,
    read_part,
)
from mainstem.params import MergeParams, Params
from mainstem.progress import progress
from mainstem.validation.columnar import arrow_schema, write_parquet
from mainstem.validation.contract import Contract
from mainstem.validation.layout import ACCEPTED, record_at, record_of, result_file

log = logging.getLogger(__name__)
_MAX_RUNS = 256


@dataclass(frozen=True)
class PendingBatch:
    applied: AppliedBatch
    rows: pa.Table


@dataclass(frozen=True)
class MasterSpec:
    """The master that the contract, code and settings in use call for.

    `empty` is the manifest of an empty master (contract, key, partitioning, code fingerprint): a
    stored master with other values is rebuilt. `schema` is the Arrow schema of its rows.
    """

    empty: Manifest
    schema: pa.Schema


@dataclass(frozen=True)
class MergePlan:
    """One run's work: the manifest it starts from and the batches to apply on top, in order."""

    base: Manifest
    pending: list[PendingBatch]
    schema: pa.Schema


def is_sorted_by(table: pa.Table, key: str) -> bool:
    """Whether the rows are already in key order (ties allowed), so a stable sort would keep them
    as they are: a batch of keys that arrive in order then costs a scan instead of a sort and a
    gather of every column."""
    keys = table[key]
    if len(keys) < 2 or keys.null_count:
        return len(keys) < 2
    if pa.types.is_integer(keys.type):
        values = np.asarray(keys.to_numpy())
        return bool(np.all(values[1:] >= values[:-1]))
    in_order = pc.less_equal(keys[:-1], keys[1:])
    return bool(pc.all(in_order).as_py())


def sort_by_key(table: pa.Table, key: str) -> pa.Table:
    """The rows sorted by key, stable: the table itself when it already is."""
    return table if is_sorted_by(table, key) else table.sort_by(key)


def latest_per_key(tables: Iterable[pa.Table], key: str) -> pa.Table:
    """All rows of `tables`, keeping only the last occurrence of each key, sorted by key."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        raise ValueError("latest_per_key needs at least one non-empty table")
    combined = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        keys = combined[key].to_numpy(zero_copy_only=False)
        reversed_keys = keys[::-1]
        _unique, first_in_reversed = np.unique(reversed_keys, return_index=True)
        last = np.sort(len(keys) - 1 - first_in_reversed)
        combined = combined.take(pa.array(last))
    return sort_by_key(combined, key)


def upsert(existing: pa.Table | None, updates: pa.Table, key: str) -> pa.Table:
    """`existing` with every row whose key is in `updates` replaced by the update, sorted by key.

    `existing` is a part as mainstem writes it (sorted by key, each key once); `updates` holds each
    key once, in any order.
    """
    updates = sort_by_key(updates, key)
    if existing is None or existing.num_rows == 0:
        return updates.combine_chunks()
    runs = _merge_runs(existing[key], updates[key])
    if runs is not None:
        pieces = [
            (updates if new else existing).slice(start, length) for new, start, length in runs
        ]
        return pa.concat_tables(pieces).combine_chunks()
    keep = pc.invert(pc.is_in(existing[key], value_set=updates[key].combine_chunks()))
    return pa.concat_tables([existing.filter(keep), updates]).sort_by(key).combine_chunks()


def _merge_runs(old: pa.ChunkedArray, new: pa.ChunkedArray) -> list[tuple[bool, int, int]] | None:
    """How to interleave two sorted integer key columns: (from `new`?, start, length) runs.

    A row of `old` whose key is in `new` is left out. Copying a few long runs of rows is much
    cheaper than gathering every row one by one, which is what a batch of scattered corrections
    needs; None when the keys are not integers or the runs are too many to be worth it.
    """
    if not pa.types.is_integer(old.type):
        return None
    old_keys = np.asarray(old.to_numpy())
    new_keys = np.asarray(new.to_numpy())
    if not len(new_keys):
        return [(False, 0, len(old_keys))]
    at = np.searchsorted(old_keys, new_keys)
    inside = at < len(old_keys)
    replaced = np.zeros(len(new_keys), dtype=bool)
    replaced[inside] = old_keys[at[inside]] == new_keys[inside]
    consumed = at + replaced  # rows of `old` used up once update i is placed
    before = np.r_[0, consumed[:-1]]
    gap = at - before  # rows of `old` between update i-1 and update i
    run_starts = np.flatnonzero(np.r_[True, gap[1:] > 0])
    if len(run_starts) > _MAX_RUNS:
        return None
    run_ends = np.r_[run_starts[1:], len(new_keys)]
    runs: list[tuple[bool, int, int]] = []
    for first, last in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        if gap[first]:
            runs.append((False, int(before[first]), int(gap[first])))
        runs.append((True, first, last - first))
    if consumed[-1] < len(old_keys):
        runs.append((False, int(consumed[-1]), len(old_keys) - int(consumed[-1])))
    return runs


def split_by_part(updates: pa.Table, key: str, partitioning: Partitioning) -> dict[int, pa.Table]:
    """The update rows grouped by the part they belong to, each group in the order of `updates`.

    Rows sorted by an integer key come in part order already (key ranges): each group is then a
    slice of `updates`, with no rows copied.
    """
    indexes = partitioning.part_indexes(updates[key])
    in_order = bool(np.all(indexes[1:] >= indexes[:-1]))
    order = np.arange(len(indexes)) if in_order else np.argsort(indexes, kind="stable")
    sorted_indexes = indexes[order]
    starts = np.flatnonzero(np.r_[True, sorted_indexes[1:] != sorted_indexes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    parts = sorted_indexes[starts].tolist()
    groups = zip(parts, starts.tolist(), ends.tolist(), strict=True)
    if in_order:
        return {part: updates.slice(start, end - start) for part, start, end in groups}
    return {part: updates.take(pa.array(order[start:end])) for part, start, end in groups}


def updates_by_part(plan: MergePlan) -> dict[str, pa.Table]:
    """The rows the plan's batches write, latest per key, grouped by the part they go to."""
    base = plan.base
    with_rows = [batch.rows.cast(plan.schema) for batch in plan.pending if batch.rows.num_rows]
    if not with_rows:
        return {}
    updates = latest_per_key(with_rows, base.key)
    return {
        base.partitioning.part_name(index): rows
        for index, rows in sorted(split_by_part(updates, base.key, base.partitioning).items())
    }


def rewrite_part(
    master_dir: Path, base: Manifest, name: str, updates: pa.Table, schema: pa.Schema
) -> pa.Table:
    """Part `name` of the master after `updates`."""
    existing = read_part(master_dir, name).cast(schema) if name in base.parts else None
    return upsert(existing, updates, base.key)


def apply_batches(
    master_dir: Path, plan: MergePlan, staged: Path, workers: int = 0
) -> tuple[Manifest, list[str]]:
    """Write every part the plan changes into `staged`; the new manifest and the parts written.

    Parts are independent, so they are rewritten in a pool of threads (Arrow releases the GIL
    while it decodes, sorts and encodes); each part is fsynced by the thread that wrote it, so the
    disk flushes one part while others are encoded. `workers` defaults to two per core.
    """
    base = plan.base
    applied = base.batches.after(batch.applied for batch in plan.pending)
    manifest = replace(base, parts=dict(base.parts), batches=applied)
    todo = updates_by_part(plan)

    def write(name: str) -> int:
        part = rewrite_part(master_dir, base, name, todo.pop(name), plan.schema)
        crashpoints.reach("master write part")
        with open(staged / name, "wb") as handle:
            # encoded straight into the file: no copy of the part's bytes in memory
            write_parquet(part, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return part.num_rows

    # two threads per core: while one waits for its part's fsync, the other keeps the core busy
    workers = min(workers or 2 * (os.cpu_count() or 1), len(todo)) or 1
    names = list(todo)
    counts: dict[str, int] = {}
    with (
        progress(len(names), "merge", unit="part") as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for name, rows in zip(names, pool.map(write, names), strict=True):
            counts[name] = rows
            bar.update(1)
    manifest.parts.update(counts)
    return manifest, sorted(counts)


def publish_master(
    master_dir: Path,
    manifest: Manifest,
    staged: Path,
    changed: list[str],
    previous: Manifest | None,
) -> None:
    """Complete the staged master and swap it in with one atomic rename.

    `staged` already holds the files in `changed`, durable: the parts written, fsynced, and the
    batch log's segments (see `batch_log.stage_log`). Every other part is a hard link to the
    current file: no bytes are copied, and DVC sees the same inode and mtime, so it does not hash
    it again.
    """
    written = set(changed)
    for name in manifest.parts:
        if name not in written and previous is not None and name in previous.parts:
            os.link(master_dir / name, staged / name)
    write_json(staged / MANIFEST, manifest.to_json())
    master_dir.parent.mkdir(parents=True, exist_ok=True)
    # every file in `staged` is durable already: parts were fsynced by their writer, carried-over
    # parts are links to published files and write_json syncs the manifest; only the directory
    # entries are left, so the cost of publishing does not grow with the number of parts
    publish_dir(staged, master_dir, durable=sorted({*manifest.parts, *changed, MANIFEST}))


def _continues(applied: BatchSummary, reports: Sequence[dict[str, Any]]) -> bool:
    """Whether `reports` start with the batches the master applied: as many, ending in the same
    batch with the same accepted bytes. Earlier batches cannot differ while the last does not:
    validated batches change only with the contract or code, which change the fingerprint."""
    if applied.count > len(reports):
        return False
    return applied.count == 0 or _applied(reports[applied.count - 1]) == applied.last


def refresh_master(
    master_dir: Path,
    reports: Sequence[dict[str, Any]],
    accepted_path: Callable[[str], Path],
    spec: MasterSpec,
    workers: int = 0,
) -> Manifest:
    """Apply every validated batch the master has not seen; rebuild if history changed.

    `reports` are the validation reports of every batch in sequence order; only those of the
    batches to apply, and of the last batch applied, are read, so `reports` may read each on
    demand. When the master's recorded batches are a prefix of `reports` (as many, ending in the
    same batch with the same accepted bytes) and it was built as `spec` asks, only the rest is
    applied; otherwise (a new contract, new code, a changed batch) the master is rebuilt.
    """
    current = read_manifest(master_dir)
    empty = spec.empty
    base = empty
    if (
        current is not None
        and (current.contract, current.fingerprint, current.partitioning, current.key)
        == (empty.contract, empty.fingerprint, empty.partitioning, empty.key)
        and _continues(current.batches, reports)
    ):
        base = current
    todo = [_applied(report) for report in reports[base.batches.count :]]
    if base is current and not todo:
        log.info("master is up to date: %d rows from %d batches", current.rows, len(reports))
        return current
    if base is empty and current is not None:
        log.info("rebuilding the master: its history or fingerprint no longer matches")
    pending = [
        PendingBatch(
            applied,
            # one file: `pq.read_table`'s dataset layer costs more than decoding a batch
            pq.ParquetFile(accepted_path(applied.batch_id)).read()
            if applied.status == "accepted"
            else spec.schema.empty_table(),
        )
        for applied in todo
    ]
    staged = fresh_dir(staging_path(master_dir, "next"))
    with storage_errors(f"could not write the master at {master_dir}"):
        plan = MergePlan(base, pending, spec.schema)
        manifest, changed = apply_batches(master_dir, plan, staged, workers)
        previous = base if base is current else None
        appended = stage_log(
            master_dir, staged, previous.batches if previous else None, [p.applied for p in pending]
        )
        publish_master(master_dir, manifest, staged, [*changed, *appended], previous)
    log.info(
        "master: %d rows in %d parts after %d batch(es); %d part(s) rewritten",
        manifest.rows,
        len(manifest.parts),
        len(todo),
        len(changed),
    )
    return manifest


def _applied(report: dict[str, object]) -> AppliedBatch:
    return AppliedBatch(
        batch_id=str(report["batch_id"]),
        sequence=int(str(report["sequence"])),
        status=str(report["status"]),
        accepted_sha256=str(report["accepted_sha256"]),
        rows_accepted=int(str(report["rows_accepted"])),
        rows_rejected=int(str(report.get("rows_rejected", 0))),
    )


def partitioning_for(contract: Contract, params: MergeParams) -> Partitioning:
    """Key ranges for integer keys; stable hash buckets for text keys."""
    if contract.dtypes[contract.primary_key] == "int64":
        return Partitioning("range", params.part_key_span)
    return Partitioning("hash", params.hash_buckets)


class ValidationReports(Sequence[dict[str, Any]]):
    """What a merge needs of each ingested batch's validation, in sequence order, each read from
    its index record when first asked for: a merge reads those of the batches it applies, not
    the whole history, and no report file at all."""

    def __init__(self, validated_dir: Path, count: int) -> None:
        self.validated_dir = validated_dir
        self.size = count
        self._read: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if index not in self._read:
            record = record_at(self.validated_dir, index + 1)
            if record is None:
                raise MainstemError(
                    f"batch number {index + 1} has no validation record in "
                    f"{self.validated_dir}; run `dvc repro validate` first"
                )
            self._read[index] = {
                **record.summary,
                "batch_id": record.batch_id,
                "sequence": record.sequence,
            }
        return self._read[index]


def accepted_file(validated_dir: Path, batch_id: str, root: Path) -> Path:
    """The accepted rows of batch `batch_id`: this batch's output, or its copy in the DVC cache."""
    record = record_of(validated_dir, batch_id)
    if record is None:
        raise MainstemError(f"batch {batch_id} has no validation record in {validated_dir}")
    return result_file(validated_dir, record, ACCEPTED, root)


def update_master(params: Params, contract: Contract) -> Manifest:
    """Merge every validated batch into the master; the new manifest."""
    validated = params.validate.validated_dir
    reports = ValidationReports(validated, last_sequence(params.ingest.raw_dir))
    partitioning = partitioning_for(contract, params.merge)
    empty = Manifest(
        contract=contract.ref,
        key=contract.primary_key,
        partitioning=partitioning,
        fingerprint=fingerprint("merge", {"partitioning": partitioning.to_json()}),
    )
    return refresh_master(
        params.merge.master_dir,
        reports,
        lambda batch_id: accepted_file(validated, batch_id, params.root),
        MasterSpec(empty, arrow_schema(contract)),
    )
