"""Replaying a contract over the master: which rows would it reject, and why.

In: the master's parts and a Contract. Out: a Replay: for each reason (a column's type, a
required value missing, each of its checks), the number of master rows that fail it and a few
examples (key and value), and the number of rows that fail any. The checks run as Arrow compute
kernels over one part at a time, reading only the columns the contract constrains, so a million
rows take well under a second; nothing is written. Checks pandera expresses but this replay does
not (regular expressions, custom checks), and image limits (the master keeps canonical images,
not the delivered files), are listed as not replayed rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mainstem.master.parts import read_manifest
from mainstem.validation.contract import Contract

EXAMPLES = 3
_ARROW = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "datetime64[ns]": pa.timestamp("ns"),
}
_DOCS = frozenset({"dtype", "nullable", "required", "coerce", "description", "title", "metadata"})


@dataclass
class Reason:
    rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Replay:
    rows: int = 0
    rejected: int = 0
    parts_read: int = 0
    reasons: dict[str, Reason] = field(default_factory=dict)
    not_replayed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rejected": self.rejected,
            "parts_read": self.parts_read,
            "reasons": {
                name: {"rows": r.rows, "examples": r.examples}
                for name, r in sorted(self.reasons.items(), key=lambda item: -item[1].rows)
            },
            "not_replayed": self.not_replayed,
        }


def _scalar(value: Any, kind: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(kind):
        return pa.scalar(pd.Timestamp(value).value, pa.timestamp("ns")).cast(kind)
    return pa.scalar(value, kind)


def _range(column: pa.Array, spec: dict[str, Any], length: bool = False) -> pa.Array:
    values = pc.utf8_length(column) if length else column
    kind = values.type
    fails = pa.array([False] * len(values))
    if spec.get("min_value") is not None:
        below = pc.less if spec.get("include_min", True) else pc.less_equal
        fails = pc.or_(fails, below(values, _scalar(spec["min_value"], kind)))
    if spec.get("max_value") is not None:
        above = pc.greater if spec.get("include_max", True) else pc.greater_equal
        fails = pc.or_(fails, above(values, _scalar(spec["max_value"], kind)))
    return fails


def _bound(compare: Callable[..., pa.Array]) -> Callable[[pa.Array, Any], pa.Array]:
    return lambda column, value: compare(column, _scalar(value, column.type))


_CHECKS: dict[str, Callable[[pa.Array, Any], pa.Array]] = {
    "in_range": _range,
    "str_length": lambda column, spec: _range(column, spec, length=True),
    "greater_than": _bound(pc.less_equal),
    "greater_than_or_equal_to": _bound(pc.less),
    "less_than": _bound(pc.greater_equal),
    "less_than_or_equal_to": _bound(pc.greater),
    "isin": lambda column, values: pc.invert(pc.is_in(column, pa.array(values, column.type))),
    "notin": lambda column, values: pc.is_in(column, pa.array(values, column.type)),
}


def column_failures(
    table: pa.Table, name: str, spec: dict[str, Any], dtype: str
) -> Iterable[tuple[str, pa.Array]]:
    """(reason, mask of failing rows) for each rule of one column of the contract."""
    if name not in table.column_names:
        yield f"{name}: missing column", pa.array([True] * table.num_rows)
        return
    column = table.column(name).combine_chunks()
    if column.type != _ARROW[dtype]:
        try:
            column = pc.cast(column, _ARROW[dtype])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            yield f"{name}: type {column.type} is not {dtype}", pa.array([True] * len(column))
            return
    if not spec.get("nullable", False):
        yield f"{name}: required (nullable: false)", pc.is_null(column)
    for check, argument in sorted(spec.items()):
        if check in _DOCS:
            continue
        if check in _CHECKS:
            yield (
                f"{name}: {check} {argument}",
                pc.fill_null(_CHECKS[check](column, argument), False),
            )


def unreplayable(contract: Contract) -> list[str]:
    """The checks of `contract` this replay cannot run, as `column.check`."""
    columns = contract.schema_spec.get("columns") or {}
    checks = sorted(
        f"{name}.{check}"
        for name, spec in columns.items()
        for check in (spec or {})
        if check not in _DOCS and check not in _CHECKS
    )
    # the master holds canonical images only: limits on the delivered files need the raw batches
    return checks + [
        f"images.{rule.column} (checked on the raw batches)" for rule in contract.images
    ]


def replay_table(table: pa.Table, contract: Contract, into: Replay) -> None:
    """Add one table's failures under `contract` to `into`."""
    key = table.column(contract.primary_key) if contract.primary_key in table.column_names else None
    columns = contract.schema_spec.get("columns") or {}
    any_failure = pa.array([False] * table.num_rows)
    for name, spec in columns.items():
        for reason, mask in column_failures(table, name, spec or {}, contract.dtypes[name]):
            count = pc.sum(mask).as_py() or 0
            if not count:
                continue
            found = into.reasons.setdefault(reason, Reason())
            found.rows += count
            any_failure = pc.or_(any_failure, mask)
            if len(found.examples) < EXAMPLES:
                rows = pc.indices_nonzero(mask).to_pylist()[: EXAMPLES - len(found.examples)]
                values = table.column(name) if name in table.column_names else None
                found.examples += [
                    {
                        "key": key[row].as_py() if key is not None else None,
                        "value": str(values[row].as_py()) if values is not None else None,
                    }
                    for row in rows
                ]
    into.rows += table.num_rows
    into.rejected += pc.sum(any_failure).as_py() or 0


def replay_master(master_dir: Path, contract: Contract) -> Replay:
    """Replay `contract` over every part of the master, one part at a time."""
    result = Replay(not_replayed=unreplayable(contract))
    manifest = read_manifest(master_dir)
    if manifest is None:
        return result
    wanted = [c for c in contract.columns]
    for part in sorted(manifest.parts):
        present = pq.read_schema(master_dir / part).names
        table = pq.read_table(master_dir / part, columns=[c for c in wanted if c in present])
        replay_table(table, contract, result)
        result.parts_read += 1
    return result
