"""Versioned data contracts: a pandera schema plus the rules pandera does not express.

In: `contracts/<dataset>/v<N>.yaml`. Out: a Contract holding the pandera schema, the primary key,
the deduplication and row policies, the accepted tabular formats, CSV settings, the size limits
(max_cell_chars, max_rows per table file), the image rules of each image column, and a fingerprint
of the file's bytes. A malformed contract is a ContractError that names the file and the key to
fix. Optional keys have defaults, so released contracts never need editing.

pandera (and with it pandas) is imported only to build the schema, which `load_contract` does by
default; readers that need only the columns and the key (merge) pass `check_schema=False`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from mainstem.errors import ContractError
from mainstem.validation.images import ImageRule

if TYPE_CHECKING:
    import pandera.pandas as pa

DTYPES = ("int64", "float64", "str", "bool", "datetime64[ns]")
ROW_POLICIES = ("quarantine_rows", "reject_batch")
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP")
CANONICAL_MODES = ("RGB", "L", "RGBA")
CANONICAL_FORMATS = ("PNG", "JPEG", "WEBP")

RowPolicy = Literal["quarantine_rows", "reject_batch"]


@dataclass(frozen=True)
class Contract:
    dataset: str
    version: int
    primary_key: str
    duplicate_keys_in_batch: Literal["reject", "keep_last"]
    row_policy: RowPolicy
    tabular_formats: tuple[str, ...]
    csv_encoding: str
    csv_delimiter: str
    max_cell_chars: int
    max_rows: int
    images: tuple[ImageRule, ...]
    dtypes: dict[str, str]
    nullable: dict[str, bool]
    schema_spec: dict[str, Any]
    fingerprint: str
    source: Path

    @property
    def ref(self) -> str:
        return f"{self.dataset}/v{self.version}"

    @property
    def columns(self) -> list[str]:
        return list(self.dtypes)

    def image_rule(self, column: str) -> ImageRule | None:
        return next((rule for rule in self.images if rule.column == column), None)

    @property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema, built once per contract file content."""
        return _pandera_schema(self.fingerprint, self.source, self.schema_spec)


_SCHEMAS: dict[str, pa.DataFrameSchema] = {}


def _pandera_schema(fingerprint: str, source: Path, spec: dict[str, Any]) -> pa.DataFrameSchema:
    if fingerprint not in _SCHEMAS:
        from pandera.io.pandas_io import deserialize_schema

        try:
            _SCHEMAS[fingerprint] = deserialize_schema(spec)
        except Exception as exc:  # pandera raises many types for a bad schema
            raise ContractError(f"{source}: the pandera schema cannot be loaded: {exc}") from exc
    return _SCHEMAS[fingerprint]


class _Reader:
    def __init__(self, path: Path, section: dict[str, Any], where: str) -> None:
        self.path, self.section, self.where = path, section, where

    def fail(self, key: str, what: str) -> ContractError:
        return ContractError(f"{self.path}: '{self.where}.{key}' {what}")

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.section:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        return self.section[key]

    def choice(self, key: str, allowed: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(key, default)
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def positive(self, key: str, default: Any = ...) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"must be a positive integer; got {value!r}")
        return value


def load_contract(path: Path, check_schema: bool = True) -> Contract:
    """Read and check one contract file (and its pandera schema, unless told not to)."""
    path = Path(path)
    data, raw = _read_document(path)
    meta = _Reader(path, raw["contract"], "contract")
    dtypes, nullable = _columns(path, raw["schema"])
    key = _primary_key(meta, dtypes, nullable)
    if meta.get("dedup", "last_write_wins") != "last_write_wins":
        raise meta.fail("dedup", "supports only last_write_wins")
    formats = _tabular_formats(meta)
    csv = _Reader(path, meta.get("csv", {}) or {}, "contract.csv")
    rules = _image_rules(path, meta, dtypes)
    version = _version(path, meta)
    contract = Contract(
        dataset=str(meta.get("dataset")),
        version=version,
        primary_key=key,
        duplicate_keys_in_batch=meta.choice(
            "duplicate_keys_in_batch", ("reject", "keep_last"), "reject"
        ),
        row_policy=meta.choice("row_policy", ROW_POLICIES, "quarantine_rows"),
        tabular_formats=formats,
        csv_encoding=str(csv.get("encoding", "utf-8")),
        csv_delimiter=str(csv.get("delimiter", ",")),
        max_cell_chars=meta.positive("max_cell_chars", 65536),
        max_rows=meta.positive("max_rows", 1_000_000),
        images=rules,
        dtypes=dtypes,
        nullable=nullable,
        schema_spec=raw["schema"],
        fingerprint=hashlib.sha256(data).hexdigest(),
        source=path,
    )
    if check_schema:
        _ = contract.schema
    return contract


def _read_document(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its YAML, which holds a `contract:` and a `schema:` mapping."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ContractError(
            f"contract {path} does not exist; check validate.dataset and "
            "validate.contract_version in params.yaml"
        ) from exc
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ContractError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("contract"), dict):
        raise ContractError(f"{path} must have a 'contract:' mapping and a 'schema:' mapping")
    if not isinstance(raw.get("schema"), dict):
        raise ContractError(f"{path} must have a 'schema:' mapping (a pandera YAML schema)")
    return data, raw


def _primary_key(meta: _Reader, dtypes: dict[str, str], nullable: dict[str, bool]) -> str:
    """The key column: a schema column, never null, of a type the merge can order."""
    key = meta.get("primary_key")
    if key not in dtypes:
        raise meta.fail("primary_key", f"names {key!r}, which is not a schema column")
    if nullable[key]:
        raise meta.fail("primary_key", f"column {key!r} must be declared nullable: false")
    if dtypes[key] not in ("int64", "str"):
        raise meta.fail("primary_key", f"column {key!r} must be int64 or str")
    return str(key)


def _tabular_formats(meta: _Reader) -> tuple[str, ...]:
    formats = tuple(meta.get("tabular_formats", ["csv", "parquet"]))
    if not formats or any(f not in ("csv", "parquet") for f in formats):
        raise meta.fail("tabular_formats", "must list csv and/or parquet")
    return formats


def _image_rules(path: Path, meta: _Reader, dtypes: dict[str, str]) -> tuple[ImageRule, ...]:
    images = meta.get("images", {}) or {}
    if not isinstance(images, dict):
        raise meta.fail("images", "must map image columns to their rules")
    return tuple(_image_rule(path, column, spec, dtypes) for column, spec in images.items())


def _version(path: Path, meta: _Reader) -> int:
    """The contract's version, which the file's name repeats (`v<version>.yaml`)."""
    version = meta.positive("version")
    if path.stem != f"v{version}":
        raise meta.fail("version", f"is {version} but the file is named {path.name}")
    return version


def _columns(path: Path, schema: dict[str, Any]) -> tuple[dict[str, str], dict[str, bool]]:
    columns = schema.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise ContractError(f"{path}: 'schema.columns' must map column names to their rules")
    dtypes: dict[str, str] = {}
    nullable: dict[str, bool] = {}
    for name, spec in columns.items():
        spec = spec or {}
        dtype = spec.get("dtype")
        if dtype not in DTYPES:
            raise ContractError(
                f"{path}: 'schema.columns.{name}.dtype' must be one of {', '.join(DTYPES)}; "
                f"got {dtype!r}"
            )
        dtypes[str(name)] = dtype
        nullable[str(name)] = bool(spec.get("nullable", False))
        if nullable[str(name)] and dtype in ("int64", "bool"):
            raise ContractError(
                f"{path}: 'schema.columns.{name}' is {dtype} and nullable; an {dtype} column "
                "cannot hold a missing value: make it nullable: false or use float64/str"
            )
    return dtypes, nullable


def _image_rule(path: Path, column: str, spec: Any, dtypes: dict[str, str]) -> ImageRule:
    where = f"contract.images.{column}"
    if dtypes.get(column) != "str":
        raise ContractError(f"{path}: '{where}' must name a str column of the schema")
    rule = _Reader(path, spec or {}, where)
    canonical = _Reader(path, rule.get("canonical"), f"{where}.canonical")
    formats = tuple(rule.get("formats"))
    unknown = [f for f in formats if f not in IMAGE_FORMATS]
    if not formats or unknown:
        raise rule.fail("formats", f"must list formats from {', '.join(IMAGE_FORMATS)}")
    return ImageRule(
        column=column,
        formats=formats,
        max_bytes=rule.positive("max_bytes", 50_000_000),
        min_width=rule.positive("min_width", 1),
        min_height=rule.positive("min_height", 1),
        max_width=rule.positive("max_width", 20_000),
        max_height=rule.positive("max_height", 20_000),
        max_pixels=rule.positive("max_pixels", 50_000_000),
        multi_frame=rule.choice("multi_frame", ("first", "reject"), "reject"),
        width=canonical.positive("width"),
        height=canonical.positive("height"),
        mode=canonical.choice("mode", CANONICAL_MODES),
        format=canonical.choice("format", CANONICAL_FORMATS),
    )
