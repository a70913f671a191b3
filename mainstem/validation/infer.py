"""A draft contract inferred from a sample delivery, for a person to review.

In: a sample (a batch folder, or one CSV or Parquet file), the dataset's name and its key column.
Out: the text of `contracts/<dataset>/v1.yaml` in mainstem's contract format, every guessed rule
followed by a comment saying what to confirm; written only where no released contract is.

pandera's `infer_schema` supplies the dtypes, the nullability and the observed ranges. The rest is
mainstem's own: its dtypes are named as the contract format names them, text columns holding ISO
dates become datetimes, a text column of few repeated values gets its allowed values, the key gets
no range (keys grow), and a column whose values all name image files in the sample becomes an
image column with default image rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd

DRAFT_MARK = "# DRAFT inferred by `mainstem contract infer`"
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP"}
_MAX_ALLOWED_VALUES = 12
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$")


@dataclass(frozen=True)
class InferredColumn:
    """One column as inferred: its contract dtype, nullability, and the guessed checks."""

    name: str
    dtype: str
    nullable: bool
    value_range: tuple[Any, Any] | None = None
    allowed: tuple[str, ...] | None = None


def read_sample(path: Path) -> tuple[pd.DataFrame, Path]:
    """The sample's table and the folder its image paths are relative to."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        tables = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".parquet"))
        if len(tables) != 1:
            raise ContractError(
                f"{path} holds {len(tables)} CSV or Parquet files; give a folder with exactly one, "
                "or the file itself"
            )
        path = tables[0]
    if path.suffix == ".csv":
        return pd.read_csv(path), path.parent
    if path.suffix == ".parquet":
        return pd.read_parquet(path), path.parent
    raise ContractError(f"{path} is not a batch folder, a .csv or a .parquet file")


def _is_text(values: pd.Series) -> bool:
    import pandas as pd

    return values.dtype == object or pd.api.types.is_string_dtype(values)


def _dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value is an ISO date, as datetimes."""
    import pandas as pd

    frame = frame.copy()
    for name in frame.columns:
        values = frame[name].dropna()
        if _is_text(frame[name]) and len(values) and values.astype(str).str.match(_ISO_DATE).all():
            frame[name] = pd.to_datetime(frame[name], errors="coerce")
    return frame


def image_columns(frame: pd.DataFrame, folder: Path) -> dict[str, list[str]]:
    """Text columns whose every value names an image file in `folder`, with the formats seen."""
    found: dict[str, list[str]] = {}
    for name in frame.columns:
        values = frame[name].dropna()
        if not _is_text(frame[name]) or values.empty:
            continue
        paths = [folder / str(value) for value in values]
        if all(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in paths):
            found[str(name)] = sorted({IMAGE_SUFFIXES[p.suffix.lower()] for p in paths})
    return found


def _dtype(dtype: Any) -> str:
    text = str(dtype)
    if text.startswith("datetime64"):
        return "datetime64[ns]"
    if text in ("int64", "float64", "bool"):
        return text
    if text.startswith(("int", "uint")):
        return "int64"
    if text.startswith("float"):
        return "float64"
    return "str"


def _scalar(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.date().isoformat() if hasattr(value, "date") else value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def infer_columns(frame: pd.DataFrame, key: str) -> list[InferredColumn]:
    """Each column's contract dtype, nullability, range and allowed values, from the sample."""
    import pandera.pandas as pa

    if key not in frame.columns:
        raise ContractError(
            f"--key {key!r} is not a column of the sample: {', '.join(frame.columns)}"
        )
    if frame[key].isna().any() or frame[key].duplicated().any():
        raise ContractError(f"--key {key!r} has missing or repeated values in the sample")
    frame = _dates(frame)
    schema = pa.infer_schema(frame)
    if not isinstance(schema, pa.DataFrameSchema):
        raise ContractError("the sample must be a table of columns")
    columns = []
    for name, column in schema.columns.items():
        stats = {check.name: check.statistics for check in column.checks}
        low = stats.get("greater_than_or_equal_to", {}).get("min_value")
        high = stats.get("less_than_or_equal_to", {}).get("max_value")
        dtype = _dtype(column.dtype)
        value_range = None if name == key or low is None else (_scalar(low), _scalar(high))
        allowed = None
        values = frame[name].dropna().astype(str)
        distinct = sorted(set(values))
        if (
            dtype == "str"
            and name != key
            and len(distinct) <= min(_MAX_ALLOWED_VALUES, len(values) // 2)
        ):
            allowed = tuple(distinct)
        columns.append(
            InferredColumn(str(name), dtype, bool(column.nullable), value_range, allowed)
        )
    return columns


def draft_contract(
    dataset: str, key: str, columns: list[InferredColumn], images: dict[str, list[str]]
) -> str:
    """The text of a draft contract v1, with a comment on every guessed rule."""
    q = json.dumps
    lines = [
        f"{DRAFT_MARK} from a sample. Review every",
        "# `CONFIRM` comment, then delete this line: the file is then released and never edited.",
        "contract:",
        f"  dataset: {q(dataset)}",
        "  version: 1",
        f"  description: {q(f'{dataset}: one row per {key}')}  # CONFIRM: say what a row is",
        f"  primary_key: {q(key)}",
        "  dedup: last_write_wins",
        "  duplicate_keys_in_batch: reject",
        "  row_policy: quarantine_rows            # or reject_batch",
        "  tabular_formats: [csv, parquet]",
    ]
    if images:
        lines.append("  images:")
    for name, formats in images.items():
        lines += [
            f"    {q(name)}:                      # CONFIRM: its values link to image files",
            f"      formats: {q(formats)}          # CONFIRM: the formats seen in the sample",
            "      max_bytes: 20000000",
            "      multi_frame: reject",
            "      canonical: {width: 64, height: 64, mode: RGB, format: PNG}",
        ]
    lines += ["", "schema:", "  schema_type: dataframe", "  api: pandas", "  columns:"]
    for column in columns:
        lines += _column_lines(column, key, column.name in images)
    lines += ["  coerce: false", "  strict: true", ""]
    return "\n".join(lines)


def _column_lines(column: InferredColumn, key: str, image: bool) -> list[str]:
    q = json.dumps
    nullable = "false" if column.name == key else str(column.nullable).lower()
    note = "the key: never missing" if column.name == key else "CONFIRM: missing in the sample?"
    lines = [
        f"    {q(column.name)}:",
        f"      dtype: {column.dtype}            # CONFIRM: inferred from the sample",
        f"      nullable: {nullable}             # {note}",
    ]
    if column.value_range is not None:
        low, high = column.value_range
        lines.append(
            f"      in_range: {{min_value: {q(low)}, max_value: {q(high)}}}  "
            "# CONFIRM: the sample's min and max; widen to the real limits"
        )
    if column.allowed is not None and not image:
        lines.append(
            f"      isin: {q(list(column.allowed))}  # CONFIRM: the values seen; add the rest"
        )
    return lines


def write_draft(contracts_dir: Path, dataset: str, text: str) -> Path:
    """Write `contracts/<dataset>/v1.yaml`, unless a released (reviewed) v1 is there."""
    path = contracts_dir / dataset / "v1.yaml"
    if path.exists() and not path.read_text(encoding="utf-8").startswith(DRAFT_MARK):
        raise ContractError(
            f"{path} is a released contract and is never overwritten; write v2 by hand for a change"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
