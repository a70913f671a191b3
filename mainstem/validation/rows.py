"""Row checks: text cells to typed values, then the contract's pandera checks and key rules.

In: a text frame from `tables` (one column per contract column, plus `_source`) with the reasons
already known for some rows, and the contract. Out: a RowCheck with the typed frame, the reasons
every failing row was rejected for, and a flat list of failure cases (column, check, value, source)
for the report. Every failure is collected in one pass (pandera lazy mode), never the first only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.errors as pe

from mainstem.validation.contract import Contract
from mainstem.validation.excerpts import shown
from mainstem.validation.tables import SOURCE

_NULL_TOKENS = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"})
# ASCII digits only: int() also reads Arabic-Indic or full-width digits, so look-alike keys
# would collide with plain ones.
_INT = re.compile(r"[+-]?[0-9]+(\.0*)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NS_MIN, _NS_MAX = pd.Timestamp.min, pd.Timestamp.max
_NO_MISSING_VALUE = frozenset({"int64", "bool"})
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class FailureCase:
    column: str
    check: str
    value: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"column": self.column, "check": self.check, "value": self.value, "row": self.source}


@dataclass
class RowCheck:
    typed: pd.DataFrame
    reasons: dict[int, list[str]] = field(default_factory=dict)
    failures: list[FailureCase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unconverted: set[tuple[int, str]] = field(default_factory=set)

    @property
    def rejected_index(self) -> list[int]:
        return sorted(self.reasons)

    def reject(self, index: int, column: str, reason: str) -> None:
        """Record that the cell could not be converted, so later checks skip it."""
        self.reasons.setdefault(index, []).append(f"{column}: {reason}")
        self.unconverted.add((index, column))


def is_missing(values: pd.Series) -> pd.Series:
    """Cells of a non-text column that hold no value: None, blank, or a token such as NA or NaN."""
    stripped = values.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return stripped.isna() | stripped.isin(_NULL_TOKENS)


def coerce(values: pd.Series, dtype: str) -> tuple[pd.Series, pd.Series, str]:
    """Typed values, a mask of cells that failed to convert, and what those cells should be."""
    text = values.astype(object)
    if dtype == "str":
        null = text.isna() | (text == "")
        return text.where(~null, None).astype("str").where(~null, None), null & False, "text"
    null = is_missing(text)
    present = text.map(lambda v: v.strip() if isinstance(v, str) else v).where(~null, "")
    if dtype == "int64":
        matches = present.map(lambda v: bool(_INT.fullmatch(v)))
        numbers = present.where(matches, "0").map(lambda v: int(v.split(".")[0]))
        in_range = numbers.map(lambda v: _INT64_MIN <= v <= _INT64_MAX)
        bad = ~null & ~(matches & in_range)
        typed = numbers.where(~bad & ~null, 0).astype("int64")
        return typed, bad, "an integer within the int64 range"
    if dtype == "float64":
        numbers = pd.to_numeric(present.where(~null, None), errors="coerce").astype("float64")
        bad = ~null & ~np.isfinite(numbers.fillna(0.0)) | (~null & numbers.isna())
        return numbers.where(~bad, np.nan), bad, "a finite number"
    if dtype == "bool":
        lowered = present.str.lower()
        bad = ~null & ~lowered.isin(_TRUE | _FALSE)
        return lowered.isin(_TRUE), bad, "true or false"
    matches = present.map(lambda v: bool(_DATE.fullmatch(v)))
    parsed = pd.to_datetime(present.where(matches & ~null, None), format="ISO8601", errors="coerce")
    in_range = parsed.isna() | ((parsed >= _NS_MIN) & (parsed <= _NS_MAX))
    bad = ~null & (parsed.isna() | ~in_range)
    typed = parsed.where(~bad).astype("datetime64[ns]")
    return typed, bad, "a date YYYY-MM-DD[THH:MM[:SS]] between 1677-09-22 and 2262-04-11"


def check_rows(
    frame: pd.DataFrame,
    contract: Contract,
    known: dict[int, list[str]],
    cut: frozenset[tuple[int, str]] = frozenset(),
) -> RowCheck:
    """Convert, check and key-check every row; collect each row's reasons.

    `cut` names the (row, column) cells the reader cut short: their rows are rejected already
    (in `known`), and nothing more is checked on a value that is not the one delivered.
    """
    frame = frame.reset_index(drop=True)
    sources = frame[SOURCE].tolist() if SOURCE in frame else [""] * len(frame)
    check = RowCheck(
        pd.DataFrame(index=frame.index),
        {i: list(r) for i, r in known.items()},
        unconverted=set(cut),
    )
    check.typed = pd.DataFrame(
        {
            column: _convert(check, frame[column], dtype, sources)
            for column, dtype in contract.dtypes.items()
        },
        index=frame.index,
    )
    _schema_checks(check, contract, sources)
    _key_checks(check, contract, sources)
    return check


def _convert(check: RowCheck, values: pd.Series, dtype: str, sources: list[str]) -> pd.Series:
    """One column as its declared type; cells that do not convert are recorded in `check`."""
    column = str(values.name)
    typed, bad, expected = coerce(values, dtype)
    for index in np.flatnonzero(bad.to_numpy()):
        if (int(index), column) in check.unconverted:
            continue  # cut short by the reader, and rejected for that already
        value = shown(values.iat[index])
        check.reject(int(index), column, f"{value!r} is not {expected}")
        check.failures.append(FailureCase(column, f"type {dtype}", value, sources[index]))
    if dtype in _NO_MISSING_VALUE:
        # int64 and bool have no missing value, so a blank cell would turn into 0 or False
        # and pass pandera's nullable check unseen: report it here.
        for index in np.flatnonzero(is_missing(values).to_numpy()):
            check.reject(int(index), column, "a value is required")
            check.failures.append(FailureCase(column, "not_nullable", "", sources[index]))
    return typed


def _schema_checks(check: RowCheck, contract: Contract, sources: list[str]) -> None:
    if check.typed.empty:
        return
    try:
        contract.schema.validate(check.typed, lazy=True)
    except pe.SchemaErrors as errors:
        cases = errors.failure_cases
        for row in cases.itertuples(index=False):
            column = str(row.column) if row.column is not None else ""
            if row.index is None or pd.isna(row.index):
                check.problems.append(
                    f"{column or 'table'}: {row.check} failed ({row.failure_case})"
                )
                continue
            index = int(row.index)
            if (index, column) in check.unconverted:
                continue  # already reported: the cell is not of the column's type at all
            reason = _reason(column, str(row.check), row.failure_case)
            check.reasons.setdefault(index, []).append(reason)
            check.failures.append(
                FailureCase(column, str(row.check), shown(row.failure_case), sources[index])
            )


def _reason(column: str, check: str, value: object) -> str:
    if check == "not_nullable":
        return f"{column}: a value is required"
    return f"{column}: {shown(value)!r} fails {check}"


def _key_checks(check: RowCheck, contract: Contract, sources: list[str]) -> None:
    key = contract.primary_key
    keys = check.typed[key]
    usable = keys.notna() & ~keys.index.isin(
        [i for i, r in check.reasons.items() if any(x.startswith(f"{key}:") for x in r)]
    )
    if contract.duplicate_keys_in_batch == "keep_last":
        valid = usable & ~keys.index.isin(list(check.reasons))
        superseded = valid & keys.where(valid).duplicated(keep="last") & keys.notna()
        for index in np.flatnonzero(superseded.to_numpy()):
            check.reasons.setdefault(int(index), []).append(
                f"{key}: superseded by a later row with the same {key} in this batch"
            )
        return
    counts = keys[usable].value_counts()
    repeated = usable & keys.isin(counts[counts > 1].index)
    for index in np.flatnonzero(repeated.to_numpy()):
        value = keys.iat[index]
        check.reasons.setdefault(int(index), []).append(
            f"{key}: {shown(value)} appears {counts[value]} times in this batch"
        )
        check.failures.append(FailureCase(key, "unique in batch", shown(value), sources[index]))
