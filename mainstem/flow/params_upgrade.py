"""What `mainstem upgrade` adds to an old workspace's settings: the keys and ignores it lacks.

In: the text of a workspace's params.yaml (or .gitignore) and the text of the source's. Out: the
workspace's text with every key the source has and the workspace lacks added, with the source's
value and comment, at the end of its section (a missing section is appended whole); and the
names of what was added. The workspace's own values and comments are never changed: a setting a
person chose stays theirs. Pure: the upgrade reads and writes the files.
"""

from __future__ import annotations

import re

_SECTION = re.compile(r"^([A-Za-z_][\w-]*):")
_KEY = re.compile(r"^  ([A-Za-z_][\w-]*):")


def _sections(text: str) -> dict[str, list[tuple[str, list[str]]]]:
    """Each top-level section's keys, in order, each with its lines (continuations included)."""
    found: dict[str, list[tuple[str, list[str]]]] = {}
    section: str | None = None
    for line in text.splitlines(keepends=True):
        top, key = _SECTION.match(line), _KEY.match(line)
        if top:
            section = top.group(1)
            found.setdefault(section, [])
        elif section is not None and key:
            found[section].append((key.group(1), [line]))
        elif section is not None and found[section] and line.startswith("   "):
            found[section][-1][1].append(line)  # a list item or a comment of the key above
    return found


def _section_end(lines: list[str], section: str) -> int:
    """The index after the last line that belongs to `section` (blank lines excluded)."""
    inside, end = False, len(lines)
    for index, line in enumerate(lines):
        top = _SECTION.match(line)
        if top:
            if inside:
                return end
            inside = top.group(1) == section
            end = index + 1
        elif inside and line.strip():
            end = index + 1
    return end


def with_new_params(workspace: str, source: str) -> tuple[str, list[str]]:
    """`workspace`'s params.yaml with the source's keys it lacks; the `section.key`s added."""
    have, want = _sections(workspace), _sections(source)
    source_lines = source.splitlines(keepends=True)
    lines = workspace.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    added: list[str] = []
    for section, keys in want.items():
        if section not in have:  # the whole section, its header's comment included
            start = next(i for i, line in enumerate(source_lines) if line.startswith(f"{section}:"))
            lines.extend(["\n", *source_lines[start : _section_end(source_lines, section)]])
            added.extend(f"{section}.{key}" for key, _block in keys)
            continue
        known = {key for key, _block in have[section]}
        missing = [(key, block) for key, block in keys if key not in known]
        if missing:
            at = _section_end(lines, section)
            lines[at:at] = [line for _key, block in missing for line in block]
            added.extend(f"{section}.{key}" for key, _block in missing)
    return "".join(lines), added


def with_new_ignores(workspace: str, source: str) -> tuple[str, list[str]]:
    """`workspace`'s .gitignore with the source's patterns it lacks, appended; those patterns."""
    have = {line.strip() for line in workspace.splitlines()}
    missing = [
        line.strip()
        for line in source.splitlines()
        if line.strip() and not line.startswith("#") and line.strip() not in have
    ]
    if not missing:
        return workspace, []
    head = workspace if workspace.endswith("\n") or not workspace else workspace + "\n"
    block = "\n# Added by `mainstem upgrade`\n" + "".join(f"{line}\n" for line in missing)
    return head + block, missing
