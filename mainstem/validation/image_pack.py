"""One batch's canonical images as one deterministic pack, and reading images back from packs.

In: canonical images by their content-hash name (`<ab>/<sha256>.<ext>`). Out: an uncompressed tar
holding `images/<name>` for each, in name order, every header fixed (mtime 0, owner 0, mode 0644),
so the same images always give the same bytes and the same DVC md5; and, from such a pack, the
bytes of the names asked for. The names inside are the content hashes, as in the old shared store.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

from mainstem.intake.raw_store import pack_header

MEMBER_DIR = "images"


def image_pack_bytes(images: dict[str, bytes]) -> bytes:
    """The pack of `images` (canonical name -> bytes); an empty tar when there are none."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as pack:
        for name, data in sorted(images.items()):
            pack.addfile(pack_header(f"{MEMBER_DIR}/{name}", len(data)), io.BytesIO(data))
    return buffer.getvalue()


def read_pack_images(pack: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The images of `names` that `pack` holds, by name; names it lacks are left out."""
    wanted = {f"{MEMBER_DIR}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    with tarfile.open(pack, mode="r:") as archive:
        for member in archive:
            name = wanted.get(member.name)
            if name is None or not member.isfile():
                continue
            handle = archive.extractfile(member)
            if handle is not None:
                found[name] = handle.read()
    return found
