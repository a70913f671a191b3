"""`make demo`: the whole flow on embedded sample data, in a workspace of its own.

In: a base folder (default `.demo/` in the source tree, which git ignores). Out: a fresh pipeline
workspace at `<base>/workspace` with a local DVC remote at `<base>/remote`, the sample batches
delivered and processed one at a time, and a printed account of each batch. Every run starts over
from an empty base folder, so left-overs of an earlier run never get in the way.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from mainstem.batchflow import BatchRun, process_next_batch
from mainstem.commands import git
from mainstem.dropfolder import Idle, Rejected
from mainstem.params import load_params
from mainstem.samples import BatchSpec, demo_batches, make_batch
from mainstem.submit import submit
from mainstem.workspace import create_workspace, source_root


def default_base() -> Path:
    return source_root() / ".demo"


def top_reasons(report: dict[str, Any], limit: int = 4) -> list[str]:
    """The most frequent rejection causes of a batch, as short lines."""
    if report["reasons"]:
        return [str(reason) for reason in report["reasons"]][:limit]
    counts = Counter(
        {
            f"{f['column'] or 'row'}: {f['check']}": int(f["rows"])
            for f in report["failures_by_check"]
        }
    )
    return [
        f"{reason} ({count} row{'s' if count != 1 else ''})"
        for reason, count in counts.most_common(limit)
    ]


def describe(label: str, run: BatchRun) -> list[str]:
    """What happened to one delivered batch, for a person to read."""
    claim = run.claim
    if isinstance(claim, Idle):
        return [f"{label}: not processed ({claim.reason})"]
    if isinstance(claim, Rejected):
        lines = [f"{label} ({claim.batch_id}): REJECTED at the drop folder"]
        return lines + [f"    - {reason}" for reason in claim.reasons]
    report = run.report or {}
    status = "REJECTED by the contract" if report["status"] == "rejected" else "accepted"
    lines = [
        f"{label} ({claim.batch_id}): {status}",
        f"  rows:   {report['rows_in']} in, {report['rows_accepted']} accepted, "
        f"{report['rows_rejected']} rejected",
    ]
    lines += [f"    - {reason}" for reason in top_reasons(report)]
    lines.append(
        f"  images: {report['images_accepted']} accepted, {report['images_rejected']} rejected"
    )
    lines.append(f"  master: {run.master_rows} rows")
    return lines


def deliver_and_process(
    workspace: Path, deliveries: Path, specs: list[BatchSpec], out: TextIO
) -> list[BatchRun]:
    incoming = load_params(workspace).ingest.incoming_dir
    runs = []
    for spec in specs:
        folder = make_batch(deliveries / spec.name, spec)
        submit([folder], incoming, spec.name)
        run = process_next_batch(workspace, run_id=f"demo-{spec.name}")
        runs.append(run)
        print("\n".join(describe(spec.name, run)), file=out, flush=True)
    return runs


def run_demo(base: Path, out: TextIO) -> Path:
    """Start over in `base`, process the sample batches, and print what happened."""
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    print(f"workspace: {base / 'workspace'} (DVC remote: {base / 'remote'})", file=out)
    workspace = create_workspace(base / "workspace")
    print("\n== processing sample batches with `dvc repro` ==", file=out, flush=True)
    deliver_and_process(workspace, base / "deliveries", demo_batches(), out)
    log = git(["log", "--format=%h %s"], workspace).stdout
    print("\n== lineage: git log in the workspace ==", file=out)
    print(log.rstrip(), file=out)
    return workspace
