"""A batch's HTML report where a browser can open it.

In: the workspace's params and a batch id. Out: `reports/batches/<batch_id>.html`, a copy of the
page the validated store keeps for that batch (the newest batch's in `data/validated/batch/`, any
other's in the DVC cache, an object with no name a browser knows as HTML). `reports/` is
git-ignored: these are views, like the pipeline page that links to them.
"""

from __future__ import annotations

import os
from pathlib import Path

from mainstem.durable import clear_stale_tmp
from mainstem.params import Params
from mainstem.validation.layout import REPORT_HTML, record_of, result_file

PAGES = Path("reports") / "batches"


def page_copy(params: Params, batch_id: str) -> Path:
    return params.root / PAGES / f"{batch_id}.html"


def copy_report_page(params: Params, batch_id: str, again: bool = True) -> Path | None:
    """Copy the batch's page to `reports/batches/` (unless there and not `again`); its path, or
    None when the batch was never validated."""
    copy = page_copy(params, batch_id)
    if copy.is_file() and not again:
        return copy
    record = record_of(params.validate.validated_dir, batch_id)
    if record is None:
        return None
    page = result_file(params.validate.validated_dir, record, REPORT_HTML, params.root)
    _replace_view(copy, page.read_bytes())
    return copy


def _replace_view(path: Path, data: bytes) -> None:
    """Replace `path` atomically but not durably: a view made again from the store on demand,
    like the pipeline page, so no crash test's write point (a kill leaves the old copy or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_tmp(path)
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        scratch.write_bytes(data)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
