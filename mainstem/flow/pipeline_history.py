"""The pipeline's history as the pipeline page draws it, read from a workspace's lineage.

In: a workspace. Out: a PipelineHistory: one BatchPoint per batch commit (its title's counts, the
master rows and active contract from `metrics/master.json` at that commit, the refusal reasons
from the batch's `report.json`), one TrainingPoint per training commit (from `metrics/train.json`
at that commit), the retrain threshold of params.yaml, and the drop folder now. One `git log` and
one `git cat-file --batch` read every commit's metrics, so a thousand batches cost two processes;
the page itself reads only the commits made since it was last built (`lineage_summary`).
The master itself and the MLflow store are never read: the lineage records what the page needs.
`write_pipeline_page` renders it to `reports/pipeline.html` (git-ignored, not lineage);
`refresh_pipeline_page` does so after a batch or a training and never fails the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from mainstem.commands import git, tool_env
from mainstem.durable import clear_stale_tmp
from mainstem.errors import MainstemError
from mainstem.flow.lineage_summary import LineageSummary, read_summary, save_summary
from mainstem.flow.pipeline_page import (
    BatchPoint,
    PipelineHistory,
    TrainingPoint,
    render_page,
    report_link,
)
from mainstem.flow.report_pages import copy_report_page
from mainstem.flow.status import incoming_status
from mainstem.params import Params, load_params
from mainstem.validation.layout import read_report, read_state

log = logging.getLogger(__name__)
PAGE = Path("reports") / "pipeline.html"
_SEPARATOR = "\x1e"
_BATCH = re.compile(
    r"^batch (?P<id>\S+)(?: \((?P<name>.*)\))?: (?:(?P<duplicate>duplicate delivery)"
    r"|(?P<status>accepted|rejected); (?P<rows_in>\d+) rows in, (?P<accepted>\d+) accepted, "
    r"(?P<rejected>\d+) rejected);"
)
# A rejection reason names the delivered file first ("batch-003.csv: missing column(s) grade");
# without it the same cause in two batches is one reason.
_IN_FILE = re.compile(r"^[^\s:]+\.[A-Za-z0-9]+: ")
_CONTRACT = re.compile(r"^contract: (.+)$", re.MULTILINE)


def page_path(params: Params) -> Path:
    return params.root / PAGE


def lineage_commits(root: Path, since: str | None = None) -> list[tuple[str, str]]:
    """(commit, message) of every commit in the workspace, oldest first; only those after
    `since` when given."""
    span = [f"{since}..HEAD"] if since else []
    completed = git(["log", "--reverse", f"--format=%H%n%B{_SEPARATOR}", *span], root, check=False)
    if completed.returncode != 0:
        return []
    commits = []
    for entry in completed.stdout.split(_SEPARATOR):
        commit, _, message = entry.strip("\n").partition("\n")
        if commit:
            commits.append((commit, message))
    return commits


def files_at(root: Path, wanted: list[str]) -> list[dict[str, Any] | None]:
    """The JSON objects at `commit:path` for each of `wanted`, in one `git cat-file --batch`."""
    if not wanted:
        return []
    completed = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=root,
        input="".join(f"{spec}\n" for spec in wanted).encode(),
        capture_output=True,
        env=tool_env(),
        check=True,
    )
    out = completed.stdout
    found: list[dict[str, Any] | None] = []
    at = 0
    for _spec in wanted:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<spec> missing"
            found.append(None)
            continue
        size = int(header[2])
        try:
            value = json.loads(out[at : at + size])
        except ValueError:
            value = None
        found.append(value if isinstance(value, dict) else None)
        at += size + 1
    return found


def batch_reasons(report: dict[str, Any] | None) -> tuple[tuple[str, int], ...]:
    """Why a batch's rows were refused, with how many: a rejected batch's rows all count under
    the first reason it was rejected for (the file it names left out); an accepted one's under
    each check a row failed."""
    if report is None:
        return ()
    reasons = [_IN_FILE.sub("", str(r), count=1) for r in report.get("reasons") or []]
    if report.get("status") == "rejected" and reasons:
        rows = int(report.get("rows_in") or 0)
        return tuple((reason, rows if n == 0 else 0) for n, reason in enumerate(reasons))
    return tuple(
        (f"{failure.get('column') or '(row)'} · {failure.get('check')}", int(failure["rows"]))
        for failure in report.get("failures_by_check") or []
    )


def _batch_point(
    number: int,
    title: re.Match[str],
    message: str,
    master: dict[str, Any],
    report: dict[str, Any] | None,
) -> BatchPoint:
    duplicate = bool(title.group("duplicate"))
    contract = _CONTRACT.search(message)
    return BatchPoint(
        number=number,
        batch_id=title.group("id"),
        name=title.group("name"),
        status="duplicate" if duplicate else title.group("status"),
        rows_in=0 if duplicate else int(title.group("rows_in")),
        rows_accepted=0 if duplicate else int(title.group("accepted")),
        rows_rejected=0 if duplicate else int(title.group("rejected")),
        master_rows=int(master.get("master_rows") or 0),
        contract=str(master.get("contract") or (contract.group(1) if contract else "unknown")),
        reasons=() if duplicate else batch_reasons(report),
    )


def _add_points(
    params: Params,
    commits: list[tuple[str, str]],
    batches: list[BatchPoint],
    trainings: list[TrainingPoint],
) -> None:
    """Append the points of `commits` (oldest first) to those of the commits before them."""
    root = params.root
    master_file = params.merge.metrics_file.relative_to(root).as_posix()
    train_file = params.train.metrics_file.relative_to(root).as_posix()
    picked: list[tuple[str, str, re.Match[str] | None]] = []
    for commit, message in commits:
        title = _BATCH.match(message)
        if title or message.startswith("train: "):
            picked.append((commit, message, title))
    metrics = files_at(root, [f"{c}:{master_file if t else train_file}" for c, _m, t in picked])
    metric = params.train.eval_metric
    validated = params.validate.validated_dir
    for (_commit, message, title), values in zip(picked, metrics, strict=True):
        if title is not None:
            refused = title.group("rejected") not in (None, "0")  # else no reason to read
            report = read_report(validated, title.group("id")) if refused else None
            batches.append(_batch_point(len(batches) + 1, title, message, values or {}, report))
        elif values and values.get("trained"):
            trainings.append(
                TrainingPoint(
                    after_batch=len(batches),
                    model_version=str(values["model_version"]),
                    eval_metric=metric,
                    score=float(values[metric]),
                    master_rows=int(values["master_rows"]),
                    promoted=bool(values["promoted"]),
                    production_version=str(values["production_version"]),
                )
            )


def read_history(params: Params, incremental: bool = False) -> PipelineHistory:
    """The workspace's batches and trainings from its lineage, and its drop folder now.

    With `incremental`, the points read last time (see `lineage_summary`) are reused and only the
    commits made since are read, and the summary is saved for the next time: what a batch adds
    to the page's cost is its own commit, not the history. The points are the same either way.
    """
    root = params.root
    state = read_state(params.validate.validated_dir)
    saved = read_summary(root, state) if incremental else None
    batches = list(saved.batches) if saved else []
    trainings = list(saved.trainings) if saved else []
    commits = lineage_commits(root, saved.head if saved else None)
    _add_points(params, commits, batches, trainings)
    head = commits[-1][0] if commits else (saved.head if saved else None)
    if incremental and head is not None and commits:
        save_summary(root, LineageSummary(head, state, tuple(batches), tuple(trainings)))
    return PipelineHistory(
        workspace=str(root),
        batches=tuple(batches),
        trainings=tuple(trainings),
        threshold_rows=params.retrain_threshold_rows,
        threshold_source="params.yaml retrain.threshold_rows; an Airflow Variable may override it",
        queue=incoming_status(params, time.time()),
    )


def write_pipeline_page(params: Params) -> Path:
    """Render the workspace's pipeline page to `reports/pipeline.html`; its path.

    The page replaces the old one atomically (a reader never sees half of it) but is not made
    durable, and is no crash test's write point: it is a view, rebuilt from lineage every time.
    """
    page = page_path(params)
    history = read_history(params, incremental=True)
    data = render_page(history)
    for batch in history.batches:
        if batch.status == "rejected" and report_link(batch.batch_id):
            # the link's target: one copy per rejected batch, made once
            with contextlib.suppress(MainstemError):
                copy_report_page(params, batch.batch_id, again=False)
    page.parent.mkdir(exist_ok=True)
    clear_stale_tmp(page)
    scratch = page.with_name(f".{page.name}.tmp-{os.getpid()}")
    try:
        scratch.write_bytes(data)
        os.replace(scratch, page)
    finally:
        scratch.unlink(missing_ok=True)
    return page


def refresh_pipeline_page(root: Path) -> Path | None:
    """Rebuild the page after a batch or a training; a failure is logged, never raised."""
    try:
        return write_pipeline_page(load_params(root))
    except Exception as exc:  # a view: whatever breaks it must not fail the batch or training
        log.warning("the pipeline page was not rebuilt: %s", exc)
        return None
