"""Upsert validated batches into the master, touching only the parts their keys fall in.

In: the current master manifest, the batches to apply (in sequence order) and the partitioning.
Out: the new manifest and the rewritten parts. Within the pending batches a later batch wins for a
key (last write wins, by batch order); against the master, a batch's row replaces the stored row.
The work is proportional to the parts the batch touches, not to the master: each touched part is
read, upserted, sorted by key and rewritten; every other part is carried over unchanged.
Applying a batch that is already recorded is a no-op, so a crash and a re-run apply rows once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mainstem import crashpoints
from mainstem.columnar import arrow_schema, parquet_bytes
from mainstem.contract import Contract
from mainstem.durable import fresh_dir, publish_dir, staging_path, storage_errors, write_json
from mainstem.errors import MainstemError
from mainstem.fingerprint import fingerprint
from mainstem.ingest import list_raw_batches
from mainstem.master import (
    MANIFEST,
    AppliedBatch,
    Manifest,
    Partitioning,
    read_manifest,
    read_part,
)
from mainstem.params import MergeParams, Params
from mainstem.validated_store import ACCEPTED, read_report

log = logging.getLogger(__name__)
MERGE_MODULES = ["mainstem.merge", "mainstem.master", "mainstem.columnar"]


@dataclass(frozen=True)
class PendingBatch:
    applied: AppliedBatch
    rows: pa.Table


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
    return combined.sort_by(key)


def upsert(existing: pa.Table | None, updates: pa.Table, key: str) -> pa.Table:
    """`existing` with every row whose key is in `updates` replaced by the update, sorted by key."""
    if existing is None or existing.num_rows == 0:
        combined = updates
    else:
        keep = pc.invert(pc.is_in(existing[key], value_set=updates[key].combine_chunks()))
        combined = pa.concat_tables([existing.filter(keep), updates])
    return combined.sort_by(key).combine_chunks()


def split_by_part(updates: pa.Table, key: str, partitioning: Partitioning) -> dict[int, pa.Table]:
    """The update rows grouped by the part they belong to."""
    indexes = partitioning.part_indexes(updates[key])
    order = np.argsort(indexes, kind="stable")
    sorted_indexes = indexes[order]
    starts = np.flatnonzero(np.r_[True, sorted_indexes[1:] != sorted_indexes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return {
        int(sorted_indexes[start]): updates.take(pa.array(order[start:end]))
        for start, end in zip(starts, ends, strict=True)
    }


def apply_batches(
    master_dir: Path, base: Manifest, pending: list[PendingBatch], schema: pa.Schema
) -> tuple[Manifest, dict[str, pa.Table]]:
    """The manifest after `pending`, and the content of every part that changes."""
    manifest = replace(base, parts=dict(base.parts), batches=list(base.batches))
    manifest.batches.extend(batch.applied for batch in pending)
    with_rows = [batch.rows.cast(schema) for batch in pending if batch.rows.num_rows]
    if not with_rows:
        return manifest, {}
    updates = latest_per_key(with_rows, base.key)
    changed: dict[str, pa.Table] = {}
    for index, rows in sorted(split_by_part(updates, base.key, base.partitioning).items()):
        name = base.partitioning.part_name(index)
        existing = read_part(master_dir, name).cast(schema) if name in base.parts else None
        part = upsert(existing, rows, base.key)
        changed[name] = part
        manifest.parts[name] = part.num_rows
    return manifest, changed


def publish_master(
    master_dir: Path, manifest: Manifest, changed: dict[str, pa.Table], previous: Manifest | None
) -> None:
    """Stage the new master beside the old one and swap it in with one atomic rename.

    Parts that did not change are hard links to the current files: no bytes are copied, and DVC
    sees the same inode and mtime, so it does not hash them again.
    """
    staged = fresh_dir(staging_path(master_dir, "next"))
    with storage_errors(f"could not write the master at {master_dir}"):
        for name in manifest.parts:
            if name in changed:
                crashpoints.reach("master write part")
                (staged / name).write_bytes(parquet_bytes(changed[name]))
            elif previous is not None and name in previous.parts:
                os.link(master_dir / name, staged / name)
        write_json(staged / MANIFEST, manifest.to_json())
        master_dir.parent.mkdir(parents=True, exist_ok=True)
        publish_dir(staged, master_dir)


def refresh_master(
    master_dir: Path,
    reports: list[dict[str, object]],
    accepted_path: Callable[[str], Path],
    empty: Manifest,
    schema: pa.Schema,
) -> Manifest:
    """Apply every validated batch the master has not seen; rebuild if history changed.

    `reports` are the validation reports of every batch in sequence order, `empty` the manifest of
    an empty master with the current contract, partitioning and fingerprint. When the master's
    recorded batches are a prefix of `reports` (same ids, same accepted bytes) only the rest is
    applied; otherwise (a new contract, new code, a changed batch) the master is rebuilt.
    """
    wanted = [_applied(report) for report in reports]
    current = read_manifest(master_dir)
    base = empty
    if (
        current is not None
        and (current.contract, current.fingerprint, current.partitioning, current.key)
        == (empty.contract, empty.fingerprint, empty.partitioning, empty.key)
        and current.batches == wanted[: len(current.batches)]
    ):
        base = current
    todo = wanted[len(base.batches) :]
    if base is current and not todo:
        log.info("master is up to date: %d rows from %d batches", current.rows, len(wanted))
        return current
    if base is empty and current is not None:
        log.info("rebuilding the master: its history or fingerprint no longer matches")
    pending = [
        PendingBatch(
            applied,
            pq.read_table(accepted_path(applied.batch_id))
            if applied.status == "accepted"
            else schema.empty_table(),
        )
        for applied in todo
    ]
    manifest, changed = apply_batches(master_dir, base, pending, schema)
    publish_master(master_dir, manifest, changed, base if base is current else None)
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
    )


def partitioning_for(contract: Contract, params: MergeParams) -> Partitioning:
    """Key ranges for integer keys; stable hash buckets for text keys."""
    if contract.dtypes[contract.primary_key] == "int64":
        return Partitioning("range", params.part_key_span)
    return Partitioning("hash", params.hash_buckets)


def update_master(params: Params, contract: Contract) -> tuple[Manifest, list[dict[str, Any]]]:
    """Merge every validated batch into the master; the manifest and the batches' reports."""
    validated = params.validate.validated_dir
    reports = []
    for raw in list_raw_batches(params.ingest.raw_dir):
        report = read_report(validated, raw.batch_id)
        if report is None:
            raise MainstemError(
                f"batch {raw.batch_id} has no validation report in {validated}; "
                "run `dvc repro validate` first"
            )
        reports.append(report)
    partitioning = partitioning_for(contract, params.merge)
    empty = Manifest(
        contract=contract.ref,
        key=contract.primary_key,
        partitioning=partitioning,
        fingerprint=fingerprint(MERGE_MODULES, {"partitioning": partitioning.to_json()}),
    )
    manifest = refresh_master(
        params.merge.master_dir,
        reports,
        lambda batch_id: validated / batch_id / ACCEPTED,
        empty,
        arrow_schema(contract),
    )
    return manifest, reports
