"""P11's synthetic history writes the pipeline's own bytes: its fast tar writer against the packs
the pipeline builds with tarfile."""

from __future__ import annotations

import hashlib

import pytest

from benchmarks.history_bench import TarWriter
from mainstem.intake.raw_store import pack_bytes
from mainstem.validation.image_pack import image_pack_bytes


def _bytes(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 10_000])
def test_raw_pack_is_the_ingested_pack(size: int) -> None:
    files = {
        "table.csv": b"id,label\n1,a\n",
        f"images/photo-{size}.png": _bytes("p", size),
        "images/" + "long-name-" * 12 + ".png": _bytes("q", size),
        "images/ünïcode.png": _bytes("u", 3),
    }
    meta = {"batch_id": "b" * 64, "sequence": 7, "name": "history-000007"}
    writer = TarWriter()
    assert writer.raw_pack(meta, files) == pack_bytes(meta, files)
    assert writer.raw_pack(meta, files) == pack_bytes(meta, files)  # from the cached headers


def test_image_pack_is_the_validated_pack() -> None:
    images = {}
    for index in range(60):
        data = _bytes(f"image {index}", 100 + 37 * index)
        digest = hashlib.sha256(data).hexdigest()
        images[f"{digest[:2]}/{digest}.png"] = data
    writer = TarWriter()
    assert writer.image_pack(images) == image_pack_bytes(images)
    assert writer.image_pack({}) == image_pack_bytes({})
