"""The flat master metrics DVC tracks in `metrics/master.json`.

In: the master manifest, whose summary of the applied batches each merge keeps up to date. Out:
one flat JSON dict (row and part counts, batches merged and rejected, rows the contract refused,
the last batch and the contract), read from the manifest alone, so writing it costs the same after
any number of batches; and `master_rows` read back through DVC.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.metrics import read_metric

if TYPE_CHECKING:  # pyarrow: not for a reader of `master_rows`
    from mainstem.master.parts import Manifest


def master_metrics(manifest: Manifest) -> dict[str, Any]:
    """What the master holds and how it got there."""
    applied = manifest.batches
    return {
        "master_rows": manifest.rows,
        "master_parts": len(manifest.parts),
        "batches_merged": applied.accepted,
        "batches_rejected": applied.rejected,
        "rows_rejected_total": applied.rows_rejected,
        "last_batch_id": applied.last.batch_id if applied.last else "",
        "contract": manifest.contract,
    }


def master_rows(root: Path, metrics_file: Path) -> int:
    """`master_rows` as DVC reports it from the tracked metrics file (never from the master)."""
    return int(read_metric(root, metrics_file.relative_to(root).as_posix(), "master_rows"))
