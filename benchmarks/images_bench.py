"""P4: image canonicalization against the Pillow floor on the same machine.

In: a Size. Out: images per second for mainstem's `canonicalize_many` (the real validation: format
allowlist, size and pixel limits, frame check, EXIF orientation, mode conversion, centre crop,
resize, encode, sha256) under the produce contract's image rule, and for the floor: a bare loop
that only decodes, resizes and encodes the same files to the same size and format, over all cores
in a `fork` pool with JPEG draft decoding. Both include starting their pool.
"""

from __future__ import annotations

import io
import os
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.flow.workspace import source_root
from mainstem.validation.contract import load_contract
from mainstem.validation.images import ImageRule, canonicalize_many

_ENCODE = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 95}, "WEBP": {"quality": 90}}


def photo(number: int, side: int) -> Image.Image:
    """A deterministic photo-like picture: smooth shading, an object, sensor noise."""
    rng = np.random.default_rng(number)
    height = side * 3 // 4
    y, x = np.mgrid[0:height, 0:side].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    shade = (x / side * 60 + y / height * 30)[..., None]
    cx, cy, r = rng.uniform(0.3, 0.7) * side, rng.uniform(0.3, 0.7) * height, side / 4
    inside = (((x - cx) ** 2 + (y - cy) ** 2) < r * r)[..., None]
    fruit = rng.uniform(60, 230, 3).astype(np.float32)
    pixels = np.where(inside, fruit, base + shade) + rng.normal(0, 6, (height, side, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_images(folder: Path, count: int, side: int) -> list[Path]:
    """Three JPEGs for every PNG, as cameras deliver them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        fmt = "PNG" if number % 4 == 3 else "JPEG"
        path = folder / f"{number:05d}.{'png' if fmt == 'PNG' else 'jpg'}"
        photo(number, side).save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths


def produce_rule() -> ImageRule:
    contract = load_contract(source_root() / "contracts" / "produce" / "v1.yaml")
    return contract.images[0]


def _bare(job: tuple[str, int, int, str]) -> int:
    path, width, height, fmt = job
    with Image.open(path) as im:
        im.draft("RGB", (width, height))
        small = im.convert("RGB").resize(
            (width, height), Image.Resampling.BICUBIC, reducing_gap=3.0
        )
    buffer = io.BytesIO()
    small.save(buffer, format=fmt, **_ENCODE[fmt])
    return len(buffer.getvalue())


def floor(paths: list[Path], rule: ImageRule) -> float:
    jobs = [(str(p), rule.width, rule.height, rule.format) for p in paths]
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    pool = get_context("fork").Pool(workers)
    try:
        pool.map(_bare, jobs, chunksize=max(1, len(jobs) // (workers * 4)))
    finally:
        # close + join lets idle workers exit on their own; `with Pool` would terminate them by
        # SIGTERM, which a worker forked from a process with a SIGTERM handler may ignore
        pool.close()
        pool.join()
    return time.perf_counter() - start


def mainstem_run(paths: list[Path], rule: ImageRule) -> float:
    jobs = [(str(p), rule, p.name) for p in paths]
    start = time.perf_counter()
    outcomes = canonicalize_many(jobs)
    elapsed = time.perf_counter() - start
    refused = [o.reason for o in outcomes if not o.ok]
    assert not refused, refused[:3]
    return elapsed


def run(size: Size, work: Path, results: Results) -> None:
    print(f"P4: {size.images} images of {size.image_side} px", flush=True)
    paths = write_images(work / "p4", size.images, size.image_side)
    rule = produce_rule()
    # alternate, so both see the same machine load; keep the best of each
    bare, ours = [], []
    for _ in range(3):
        bare.append(floor(paths, rule))
        ours.append(mainstem_run(paths, rule))
    results.sample_load()
    what = f"{size.images} images ({size.image_side}x{size.image_side * 3 // 4}, 3 JPEG : 1 PNG)"
    results.measure("P4", f"{what}: Pillow floor", len(paths) / min(bare), "/s")
    results.measure("P4", f"{what}: mainstem canonicalize_many", len(paths) / min(ours), "/s")
    results.target(
        Target(
            "P4",
            "canonicalize_many throughput ÷ Pillow floor",
            min(bare) / min(ours),
            0.5,
            "at_least",
            f"to {rule.width}x{rule.height} {rule.mode} {rule.format} (contract produce/v1), "
            f"{os.cpu_count()} processes each; floor = decode (JPEG draft), convert, resize, "
            "encode in a bare fork pool; best of 3 alternating runs, pool start included.",
        )
    )
