"""Validate one raw batch against a contract: rows, links and images, all failures at once.

In: a RawBatch (its tables and image files) and a Contract. Out: a BatchResult holding the accepted
rows (typed, the image column pointing at canonical images, sorted by primary key), the rejected
rows with every reason, the canonical images the accepted rows use, and a JSON-able report. A batch
is rejected whole for a structural error (no table, no data rows, an unreadable file, a missing or
unexpected column, a link to a file the batch lacks) or when any row fails under the reject_batch
policy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mainstem.intake.delivery import is_table
from mainstem.intake.ingest import RawBatch
from mainstem.progress import enabled as progress_enabled
from mainstem.progress import progress
from mainstem.validation.contract import Contract
from mainstem.validation.excerpts import shown
from mainstem.validation.images import ImageOutcome, ImageRule, canonicalize_many
from mainstem.validation.links import BatchFiles, resolve_link
from mainstem.validation.rows import FailureCase, RowCheck, check_rows
from mainstem.validation.tables import SOURCE, empty_frame, read_table

REASONS = "_reasons"
MAX_FAILURE_CASES = 1000
PROGRESS_CHUNK = 256


@dataclass(frozen=True)
class ImageReport:
    column: str
    path: str
    rows: int
    outcome: ImageOutcome

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "path": self.path,
            "rows": self.rows,
            "status": "accepted" if self.outcome.ok else "rejected",
            "reason": self.outcome.reason,
            "canonical": self.outcome.name if self.outcome.ok else None,
            "source": self.outcome.source,
            "note": self.outcome.note,
            "stats": list(self.outcome.stats) if self.outcome.stats else None,
        }


@dataclass
class _Tables:
    """The batch's tables read into one text frame, and what reading them found.

    `known` holds the reasons of rows that are malformed already; `cut` the (row, column) cells
    too long to keep whole; `unusable_rows` counts the data rows of files rejected whole.
    """

    frame: pd.DataFrame
    known: dict[int, list[str]] = field(default_factory=dict)
    cut: set[tuple[int, str]] = field(default_factory=set)
    failures: list[FailureCase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unusable_rows: int = 0


@dataclass(frozen=True)
class _Findings:
    """A batch under check and what the checks found so far.

    The later checks (links, then images) add to `check.reasons` (per row), `failures` and
    `problems` (the batch's own); `sources` names each row's file and line.
    """

    raw: RawBatch
    contract: Contract
    check: RowCheck
    sources: list[str]
    failures: list[FailureCase]
    problems: list[str]


@dataclass
class BatchResult:
    batch_id: str
    sequence: int
    name: str | None
    contract: str
    problems: list[str]
    rows_in: int
    accepted: pd.DataFrame
    rejected: pd.DataFrame
    failures: list[FailureCase]
    images: list[ImageReport]
    unreferenced: list[str]
    canonical: dict[str, bytes] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "rejected" if self.problems else "accepted"

    @property
    def images_accepted(self) -> int:
        return sum(1 for image in self.images if image.outcome.ok) if not self.problems else 0

    @property
    def images_rejected(self) -> int:
        return len(self.images) - self.images_accepted

    def report(self) -> dict[str, Any]:
        by_check = Counter((f.column, f.check) for f in self.failures)
        return {
            "batch_id": self.batch_id,
            "sequence": self.sequence,
            "name": self.name,
            "contract": self.contract,
            "status": self.status,
            "reasons": self.problems,
            "rows_in": self.rows_in,
            "rows_accepted": len(self.accepted),
            "rows_rejected": self.rows_in - len(self.accepted),
            "images_accepted": self.images_accepted,
            "images_rejected": self.images_rejected,
            "failures_by_check": [
                {"column": column, "check": check, "rows": count}
                for (column, check), count in sorted(by_check.items())
            ],
            "failure_cases": [f.to_json() for f in self.failures[:MAX_FAILURE_CASES]],
            "failure_cases_total": len(self.failures),
            "images": [image.to_json() for image in self.images],
            "stored_images": sorted(self.canonical),
            "unreferenced_files": self.unreferenced,
        }


def validate_batch(raw: RawBatch, contract: Contract, workers: int = 0) -> BatchResult:
    """Check every row and linked image of `raw` against `contract`."""
    tables = _read_tables(raw, contract)
    frame, failures, problems = tables.frame, tables.failures, tables.problems
    check = check_rows(frame, contract, tables.known, frozenset(tables.cut))
    failures.extend(check.failures)
    problems.extend(check.problems)
    findings = _Findings(raw, contract, check, frame[SOURCE].tolist(), failures, problems)
    links = _resolve_links(findings)
    images: list[ImageReport] = []
    if not problems:
        images = _check_images(findings, links, workers)
    if contract.row_policy == "reject_batch" and check.reasons and not problems:
        problems.append(
            f"{len(check.reasons)} of {len(frame)} rows failed and contract {contract.ref} "
            "rejects the whole batch when any row fails (row_policy: reject_batch)"
        )
    rejected_rows = list(range(len(frame))) if problems else sorted(check.reasons)
    accepted = _accepted(check, contract, links, images, rejected_rows)
    referenced = {path for column_links in links.values() for path in column_links.values()}
    unreferenced = sorted(
        f.path for f in raw.files if not is_table(f.path) and f.path not in referenced
    )
    canonical = {
        image.outcome.name: image.outcome.data
        for image in images
        if image.outcome.ok and image.outcome.data is not None
    }
    used = set()
    for rule in contract.images:
        used |= set(accepted[rule.column].dropna())
    return BatchResult(
        batch_id=raw.batch_id,
        sequence=raw.sequence,
        name=raw.name,
        contract=contract.ref,
        problems=problems,
        rows_in=len(frame) + tables.unusable_rows,
        accepted=accepted,
        rejected=_rejected(frame, check, rejected_rows, problems),
        failures=failures,
        images=images,
        unreferenced=unreferenced,
        canonical={name: data for name, data in canonical.items() if name in used},
    )


def _read_tables(raw: RawBatch, contract: Contract) -> _Tables:
    frames: list[pd.DataFrame] = []
    tables = _Tables(empty_frame(contract))
    offset = 0
    for table in raw.tables:
        read = read_table(table.path, raw.file_path(table.path).read_bytes(), contract)
        tables.problems.extend(read.problems)
        tables.unusable_rows += read.unusable_rows
        for index, reasons in read.row_reasons.items():
            tables.known[offset + index] = list(reasons)
            source = read.frame[SOURCE].iat[index]
            tables.failures.extend(
                FailureCase("", "row shape", reason, source) for reason in reasons
            )
        tables.cut.update((offset + index, column) for index, column in read.cut)
        frames.append(read.frame)
        offset += len(read.frame)
    if not raw.tables:
        tables.problems.append("the batch holds no CSV or Parquet file")
    elif not tables.problems and not offset:
        # An empty delivery is more likely a failed export than news; say so instead of
        # recording an accepted batch that changed nothing.
        tables.problems.append(
            "the batch's tables hold no data rows, only headers; deliver the rows"
        )
    non_empty = [f for f in frames if not f.empty]
    if non_empty:
        tables.frame = pd.concat(non_empty, ignore_index=True)
    return tables


def _resolve_links(found: _Findings) -> dict[str, dict[int, str]]:
    """Per image column, row index -> batch file path, for links that resolve."""
    files = BatchFiles.of(f.path for f in found.raw.files)
    resolved: dict[str, dict[int, str]] = {}
    for rule in found.contract.images:
        resolved[rule.column] = {}
        for index, value in found.check.typed[rule.column].items():
            row = int(str(index))
            if value is None or pd.isna(value) or (row, rule.column) in found.check.unconverted:
                continue  # no link, or a cell cut short that its row is rejected for already
            link = resolve_link(str(value), files)
            if link.path is not None:
                resolved[rule.column][row] = link.path
                continue
            reason = f"{rule.column}: {link.reason}"
            source = found.sources[row]
            found.failures.append(FailureCase(rule.column, "link", shown(value), source))
            if link.broken:
                found.problems.append(f"{source}: {reason}")
            else:
                found.check.reasons.setdefault(row, []).append(reason)
    return resolved


def _check_images(
    found: _Findings, links: dict[str, dict[int, str]], workers: int
) -> list[ImageReport]:
    reports: list[ImageReport] = []
    for rule in found.contract.images:
        column_links = links[rule.column]
        paths = sorted(set(column_links.values()))
        jobs = [(str(found.raw.file_path(path)), rule, path) for path in paths]
        outcomes = dict(zip(paths, _canonicalize(jobs, workers, rule.column), strict=True))
        uses = Counter(column_links.values())
        reports.extend(ImageReport(rule.column, p, uses[p], outcomes[p]) for p in paths)
        for row, path in sorted(column_links.items()):
            outcome = outcomes[path]
            if not outcome.ok:
                reason = f"{path}: {outcome.reason}"
                found.check.reasons.setdefault(row, []).append(f"{rule.column}: {reason}")
                found.failures.append(FailureCase(rule.column, "image", reason, found.sources[row]))
    return reports


def _canonicalize(
    jobs: list[tuple[str, ImageRule, str]], workers: int, column: str
) -> list[ImageOutcome]:
    """Every job's outcome, in order; in chunks only while a person watches the progress.

    The pool reports nothing until it is done, so a bar needs the work cut into pieces; a fresh
    pool per piece costs a fork or two, which is not worth paying when nobody is watching.
    """
    if len(jobs) <= PROGRESS_CHUNK or not progress_enabled():
        return canonicalize_many(jobs, workers)
    outcomes: list[ImageOutcome] = []
    with progress(len(jobs), f"images ({column})", unit="img") as bar:
        for start in range(0, len(jobs), PROGRESS_CHUNK):
            chunk = jobs[start : start + PROGRESS_CHUNK]
            outcomes.extend(canonicalize_many(chunk, workers))
            bar.update(len(chunk))
    return outcomes


def _accepted(
    check: RowCheck,
    contract: Contract,
    links: dict[str, dict[int, str]],
    images: list[ImageReport],
    rejected_rows: list[int],
) -> pd.DataFrame:
    accepted = check.typed.drop(index=rejected_rows)
    canonical = {(i.column, i.path): i.outcome.name for i in images if i.outcome.ok}
    for rule in contract.images:
        names = {
            row: canonical[(rule.column, path)]
            for row, path in links[rule.column].items()
            if (rule.column, path) in canonical
        }
        accepted[rule.column] = pd.Series(
            [names.get(int(str(row))) for row in accepted.index], index=accepted.index, dtype="str"
        )
    accepted = accepted.sort_values(contract.primary_key, kind="stable")
    return accepted.reset_index(drop=True)


def _rejected(
    frame: pd.DataFrame, check: RowCheck, rejected_rows: list[int], problems: list[str]
) -> pd.DataFrame:
    rejected = frame.iloc[rejected_rows].copy()
    batch_reason = [_batch_reason(problems)] if problems else []
    rejected[REASONS] = [
        "; ".join(check.reasons.get(row, []) + ([] if check.reasons.get(row) else batch_reason))
        for row in rejected_rows
    ]
    for column in rejected.columns:
        rejected[column] = rejected[column].astype("str").where(rejected[column].notna(), None)
    return rejected.reset_index(drop=True)


def _batch_reason(problems: list[str], shown: int = 3) -> str:
    """Why the batch was rejected, for rows with no reason of their own.

    Only the first problems are repeated: every row of a batch with thousands of broken links
    carrying all of them would make the rejected table grow with rows times problems.
    """
    more = len(problems) - shown
    tail = f"; and {more} more problem(s), listed in the report" if more > 0 else ""
    return "batch rejected: " + "; ".join(problems[:shown]) + tail
