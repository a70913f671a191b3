"""What changed between two versions of a data contract, and whether producers can keep up.

In: two contracts as their parsed YAML mappings (`contract:` and `schema:`). Out: one Change per
difference, classified as
- breaking: data the old contract accepts may now be rejected, or readers see other data: a column
  removed, renamed or added (the schema is strict: every column must be delivered), a type
  changed, nullable becoming required, a range or allowed set narrowed, a check added, the primary
  key or the dedup rule changed, a table format or encoding dropped, a size or image limit
  tightened, the canonical image changed;
- non-breaking: a loosening (a check removed, a range widened, a value allowed), a description.
`exit_code` maps the worst change to 0 (none), 1 (non-breaking) or 2 (breaking). Nothing here
reads a file: `contract diff` loads and checks both contracts first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["breaking", "non-breaking"]
BREAKING: Kind = "breaking"
LOOSER: Kind = "non-breaking"

# Keys of the contract section with their defaults, and how a change of each is classified.
_META_DEFAULTS: dict[str, Any] = {
    "dataset": None,
    "primary_key": None,
    "dedup": "last_write_wins",
    "duplicate_keys_in_batch": "reject",
    "row_policy": "quarantine_rows",
    "tabular_formats": ["csv", "parquet"],
    "max_cell_chars": 65536,
    "max_rows": 1_000_000,
}
_IMAGE_DEFAULTS: dict[str, Any] = {
    "max_bytes": 50_000_000,
    "min_width": 1,
    "min_height": 1,
    "max_width": 20_000,
    "max_height": 20_000,
    "max_pixels": 50_000_000,
    "multi_frame": "reject",
}
_UPPER_LIMITS = ("max_cell_chars", "max_rows", "max_bytes", "max_width", "max_height", "max_pixels")
_LOWER_LIMITS = ("min_width", "min_height")
_SCHEMA_DOCS = ("description", "title", "metadata")
_COLUMN_SHAPE = ("dtype", "nullable", "required", "coerce")


@dataclass(frozen=True)
class Change:
    kind: Kind
    where: str  # contract.primary_key, schema.columns.weight_g.in_range, ...
    what: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "what": self.what}


def exit_code(changes: list[Change]) -> int:
    """0 when nothing changed, 1 when every change is non-breaking, 2 when one is breaking."""
    if not changes:
        return 0
    return 2 if any(c.kind == BREAKING for c in changes) else 1


def _ordered(value: Any) -> Any:
    """A value that compares with others of its kind (dates as ISO text, numbers as numbers)."""
    return str(value) if not isinstance(value, (int, float)) else value


def _tighter_upper(old: Any, new: Any) -> bool:
    return bool(_ordered(new) < _ordered(old))


def _tighter_lower(old: Any, new: Any) -> bool:
    return bool(_ordered(new) > _ordered(old))


def _range_change(where: str, old: Any, new: Any) -> Change:
    """in_range / str_length: {min_value, max_value}; narrower on either side is breaking."""
    old, new = old or {}, new or {}
    narrowed = []
    for bound, tighter in (("min_value", _tighter_lower), ("max_value", _tighter_upper)):
        before, after = old.get(bound), new.get(bound)
        if after is not None and (before is None or tighter(before, after)):
            narrowed.append(f"{bound} {before} → {after}")
    for flag in ("include_min", "include_max"):
        if old.get(flag, True) and new.get(flag, True) is False:
            narrowed.append(f"{flag} true → false")
    if narrowed:
        return Change(BREAKING, where, "range narrowed: " + ", ".join(narrowed))
    return Change(LOOSER, where, f"range widened: {old} → {new}")


def _bound_change(tighter: Callable[[Any, Any], bool]) -> Callable[[str, Any, Any], Change]:
    def change(where: str, old: Any, new: Any) -> Change:
        if tighter(old, new):
            return Change(BREAKING, where, f"bound narrowed: {old} → {new}")
        return Change(LOOSER, where, f"bound widened: {old} → {new}")

    return change


def _set_change(allowed: bool) -> Callable[[str, Any, Any], Change]:
    """isin (the allowed values) or notin (the forbidden ones)."""

    def change(where: str, old: Any, new: Any) -> Change:
        before, after = set(map(str, old or [])), set(map(str, new or []))
        fewer = sorted(before - after) if allowed else sorted(after - before)
        more = sorted(after - before) if allowed else sorted(before - after)
        if fewer:
            verb = "no longer allowed" if allowed else "now forbidden"
            return Change(BREAKING, where, f"allowed set narrowed: {', '.join(fewer)} {verb}")
        return Change(LOOSER, where, f"allowed set widened: {', '.join(more)} now allowed")

    return change


_CHECKS: dict[str, Callable[[str, Any, Any], Change]] = {
    "in_range": _range_change,
    "str_length": _range_change,
    "greater_than": _bound_change(_tighter_lower),
    "greater_than_or_equal_to": _bound_change(_tighter_lower),
    "less_than": _bound_change(_tighter_upper),
    "less_than_or_equal_to": _bound_change(_tighter_upper),
    "isin": _set_change(allowed=True),
    "notin": _set_change(allowed=False),
}


def _check_change(where: str, old: Any, new: Any) -> Change:
    name = where.rsplit(".", 1)[-1]
    if name in _CHECKS:
        return _CHECKS[name](where, old, new)
    return Change(BREAKING, where, f"check changed: {old} → {new} (may reject more)")


def _column_changes(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    where = f"schema.columns.{name}"
    changes = []
    if old.get("dtype") != new.get("dtype"):
        changes.append(
            Change(BREAKING, f"{where}.dtype", f"type {old.get('dtype')} → {new.get('dtype')}")
        )
    was, now = bool(old.get("nullable", False)), bool(new.get("nullable", False))
    if was != now:
        kind, what = (BREAKING, "nullable → required") if was else (LOOSER, "required → nullable")
        changes.append(Change(kind, f"{where}.nullable", what))
    if old.get("required", True) != new.get("required", True):
        optional = new.get("required", True) is False
        kind, what = (LOOSER, "may now be left out") if optional else (BREAKING, "now required")
        changes.append(Change(kind, f"{where}.required", what))
    for key in sorted(set(old) | set(new)):
        if key in _COLUMN_SHAPE or old.get(key) == new.get(key):
            continue
        at = f"{where}.{key}"
        if key in _SCHEMA_DOCS:
            changes.append(Change(LOOSER, at, f"{key} changed"))
        elif key not in old:
            changes.append(Change(BREAKING, at, f"check added: {key} {new[key]}"))
        elif key not in new:
            changes.append(Change(LOOSER, at, f"check removed: {key} {old[key]}"))
        else:
            changes.append(_check_change(at, old[key], new[key]))
    return changes


def _shape(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _SCHEMA_DOCS}


def _columns_diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    removed = [c for c in old if c not in new]
    added = [c for c in new if c not in old]
    changes = []
    for name in removed:
        twin = next((a for a in added if _shape(new[a] or {}) == _shape(old[name] or {})), None)
        if twin is not None:
            added.remove(twin)
            changes.append(Change(BREAKING, f"schema.columns.{name}", f"renamed to {twin}"))
        else:
            changes.append(Change(BREAKING, f"schema.columns.{name}", "column removed"))
    for name in added:
        if (new[name] or {}).get("required", True) is False:
            changes.append(Change(LOOSER, f"schema.columns.{name}", "optional column added"))
        else:
            what = "column added: every delivery must now carry it"
            changes.append(Change(BREAKING, f"schema.columns.{name}", what))
    for name in old:
        if name in new and old[name] != new[name]:
            changes.extend(_column_changes(name, old[name] or {}, new[name] or {}))
    return changes


def _schema_diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes = _columns_diff(old.get("columns") or {}, new.get("columns") or {})
    for key in ("strict", "coerce", "unique"):
        before, after = old.get(key), new.get(key)
        if before != after:
            changes.append(Change(BREAKING, f"schema.{key}", f"{before} → {after}"))
    for key in ("checks", "index"):
        if old.get(key) != new.get(key):
            changes.append(Change(BREAKING, f"schema.{key}", "dataframe checks changed"))
    return changes


def _limit_change(where: str, key: str, old: Any, new: Any) -> Change:
    if key in _UPPER_LIMITS:
        tighter = _tighter_upper(old, new)
    elif key in _LOWER_LIMITS:
        tighter = _tighter_lower(old, new)
    else:  # a choice such as multi_frame: only "first" → "reject" rejects more
        tighter = not (key == "multi_frame" and new == "first")
    kind = BREAKING if tighter else LOOSER
    return Change(kind, where, f"{'tightened' if tighter else 'loosened'}: {old} → {new}")


def _formats_change(where: str, old: Any, new: Any, what: str) -> Change:
    dropped = sorted(set(map(str, old or [])) - set(map(str, new or [])))
    if dropped:
        return Change(BREAKING, where, f"{what} no longer accepted: {', '.join(dropped)}")
    more = sorted(set(map(str, new or [])) - set(map(str, old or [])))
    return Change(LOOSER, where, f"{what} now accepted: {', '.join(more)}")


def _image_diff(column: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    where = f"contract.images.{column}"
    changes = []
    for key in sorted(_IMAGE_DEFAULTS):
        before, after = old.get(key, _IMAGE_DEFAULTS[key]), new.get(key, _IMAGE_DEFAULTS[key])
        if before != after:
            changes.append(_limit_change(f"{where}.{key}", key, before, after))
    if old.get("formats") != new.get("formats"):
        formats = _formats_change(f"{where}.formats", old.get("formats"), new.get("formats"), "")
        changes.append(Change(formats.kind, formats.where, "image formats" + formats.what))
    if old.get("canonical") != new.get("canonical"):
        what = (
            f"canonical image {old.get('canonical')} → {new.get('canonical')}: stored images differ"
        )
        changes.append(Change(BREAKING, f"{where}.canonical", what))
    return changes


def _images_diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes = []
    for column in sorted(set(old) | set(new)):
        if column not in new:
            changes.append(Change(LOOSER, f"contract.images.{column}", "image checks removed"))
        elif column not in old:
            changes.append(Change(BREAKING, f"contract.images.{column}", "image checks added"))
        else:
            changes.extend(_image_diff(column, old[column] or {}, new[column] or {}))
    return changes


def _meta_change(key: str, before: Any, after: Any) -> Change:
    where = f"contract.{key}"
    if key in _UPPER_LIMITS:
        return _limit_change(where, key, before, after)
    if key == "tabular_formats":
        return _formats_change(where, before, after, "table formats")
    if key == "row_policy":
        stricter = after == "reject_batch"
        kind = BREAKING if stricter else LOOSER
        return Change(kind, where, f"row policy {before} → {after}")
    what = {"primary_key": "primary key", "dedup": "dedup rule"}.get(key, key.replace("_", " "))
    return Change(BREAKING, where, f"{what} {before} → {after}")


def diff_contracts(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every difference between contract `old` and contract `new`, classified."""
    old_meta, new_meta = old.get("contract") or {}, new.get("contract") or {}
    changes = []
    for key, default in _META_DEFAULTS.items():
        before, after = old_meta.get(key, default), new_meta.get(key, default)
        if before != after:
            changes.append(_meta_change(key, before, after))
    old_csv, new_csv = old_meta.get("csv") or {}, new_meta.get("csv") or {}
    for key, default in (("encoding", "utf-8"), ("delimiter", ",")):
        before, after = old_csv.get(key, default), new_csv.get(key, default)
        if before != after:
            changes.append(Change(BREAKING, f"contract.csv.{key}", f"{before} → {after}"))
    if old_meta.get("description") != new_meta.get("description"):
        changes.append(Change(LOOSER, "contract.description", "description changed"))
    changes += _images_diff(old_meta.get("images") or {}, new_meta.get("images") or {})
    changes += _schema_diff(old.get("schema") or {}, new.get("schema") or {})
    return changes


def describe(changes: list[Change], old_ref: str, new_ref: str) -> list[str]:
    """The diff as lines a person reads, breaking changes first."""
    if not changes:
        return [f"{old_ref} → {new_ref}: no change"]
    breaking = sum(c.kind == BREAKING for c in changes)
    lines = [
        f"{old_ref} → {new_ref}: {len(changes)} change(s), {breaking} breaking, "
        f"{len(changes) - breaking} non-breaking"
    ]
    ordered = sorted(changes, key=lambda c: (c.kind != BREAKING, c.where))
    lines += [f"  {c.kind:<12} {c.where}: {c.what}" for c in ordered]
    return lines
