"""Validate linked images and turn them into canonical files.

In: an image's bytes and the contract's ImageRule for its column. Out: an ImageOutcome, either the
canonical image (EXIF orientation applied, converted to the contract's mode, centre-cropped and
resized to its size, re-encoded with no metadata) named by the sha256 of its bytes, or the reason
the image is refused. Only formats in the rule's allowlist are ever parsed; a full `load()` runs on
every image, so corrupt JPEG data is caught, and a PNG's chunks are checked up to IEND, so a PNG
cut after its pixel data is caught too; Pillow's decompression-bomb warning is an error here.
Many images are processed in a bounded pool of worker processes; results keep the input order.

This module imports only Pillow and NumPy, so worker processes start quickly.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False
_ENCODE = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 95}, "WEBP": {"quality": 90}}
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
_MAGIC = (
    (b"%PDF", "PDF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"RIFF", "WEBP or another RIFF format"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)
# What a decoder's message says was damaged, in the producer's words; the first clue found wins.
_DAMAGE = (
    ("checksum", "a checksum does not match its data"),
    ("crc", "a checksum does not match its data"),
    ("palette", "its colour palette is broken"),
    ("dimensions", "its width and height are missing or invalid"),
    ("broken data stream", "its compressed pixel data is damaged"),
    ("chunk", "a chunk of its data is damaged"),
)
_WHITE = (255, 255, 255)
_INLINE_BELOW = 16


@dataclass(frozen=True)
class ImageRule:
    column: str
    formats: tuple[str, ...]
    max_bytes: int
    min_width: int
    min_height: int
    max_width: int
    max_height: int
    max_pixels: int
    multi_frame: Literal["first", "reject"]
    width: int
    height: int
    mode: str
    format: str

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.format]


@dataclass(frozen=True)
class ImageOutcome:
    reason: str | None
    data: bytes | None = None
    sha256: str | None = None
    extension: str | None = None
    source: str | None = None
    note: str | None = None
    stats: tuple[float, ...] | None = None  # IMAGE_STATS of the canonical image, for drift

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def name(self) -> str:
        """Where the canonical image lives in the image store: `ab/abcdef....png`."""
        if self.sha256 is None:
            raise ValueError("a refused image has no canonical name")
        return f"{self.sha256[:2]}/{self.sha256}.{self.extension}"


def sniff(data: bytes) -> str | None:
    head = data[:16].lstrip()
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def canonicalize(data: bytes, rule: ImageRule, filename: str = "") -> ImageOutcome:
    """Check one image against `rule` and produce its canonical encoding."""
    if not data:
        return ImageOutcome("the image file is empty (0 bytes)")
    if len(data) > rule.max_bytes:
        return ImageOutcome(f"the image file is {len(data)} bytes (max {rule.max_bytes})")
    Image.MAX_IMAGE_PIXELS = rule.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            _check_png_structure(data, rule)
            return _canonicalize(data, rule, filename)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return ImageOutcome(
                f"refused as a decompression bomb: it declares more than {rule.max_pixels} "
                "pixels (the contract's max_pixels); deliver a smaller image"
            )
        except UnidentifiedImageError:
            return ImageOutcome(_unidentified(data, rule))
        except MemoryError:
            return ImageOutcome("the image needs more memory to decode than is available")
        except Exception as exc:
            return ImageOutcome(_decode_failure(exc, sniff(data)))


def _unidentified(data: bytes, rule: ImageRule) -> str:
    """Why Pillow could not open the file: another format, or an allowed one that is broken."""
    kind = sniff(data)
    allowed = ", ".join(rule.formats)
    if kind in rule.formats:
        return _corrupt(kind, "its header cannot be read", "corrupt or truncated")
    if kind:
        return f"the file is {kind}; allowed formats are {allowed}"
    return f"not an image in an allowed format ({allowed})"


def _check_png_structure(data: bytes, rule: ImageRule) -> None:
    """Walk a PNG's chunks and their checksums up to IEND.

    Pillow's decoder stops once it has the pixels, so a PNG cut off after its image data, or
    with a damaged chunk after it, would otherwise pass as complete.
    """
    if "PNG" not in rule.formats or sniff(data) != "PNG":
        return
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        im.verify()


def _decode_failure(exc: Exception, kind: str | None) -> str:
    """A reason a producer can act on, from whatever the decoder raised.

    Pillow signals truncation, damage and oversized text chunks with plain OSError, SyntaxError
    and ValueError, so their messages are the only way to tell these cases apart. The message
    itself never reaches the reason: it names the decoder's internals, not what to fix.
    """
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text:
        return "the image file is truncated (its data ends early); deliver the complete file"
    if isinstance(exc, ValueError) and "max_text_" in text:
        return (
            "refused as a decompression bomb: its PNG text chunks expand beyond the safe limit; "
            "strip the metadata and deliver it again"
        )
    detail = next((said for clue, said in _DAMAGE if clue in text), "its data cannot be decoded")
    return _corrupt(kind, detail)


def _corrupt(kind: str | None, detail: str, state: str = "corrupt") -> str:
    return f"the file is a {state} {kind or 'image'} ({detail}); re-export the image"


def _canonicalize(data: bytes, rule: ImageRule, filename: str) -> ImageOutcome:
    with Image.open(io.BytesIO(data), formats=list(rule.formats)) as im:
        source = f"{im.format} {im.width}x{im.height} {im.mode}"
        width, height = im.size
        if width > rule.max_width or height > rule.max_height:
            return ImageOutcome(
                f"{width}x{height} exceeds the maximum {rule.max_width}x{rule.max_height}",
                source=source,
            )
        if width * height > rule.max_pixels:
            return ImageOutcome(
                f"{width * height} pixels exceeds the maximum {rule.max_pixels}", source=source
            )
        if width < rule.min_width or height < rule.min_height:
            return ImageOutcome(
                f"{width}x{height} is below the minimum {rule.min_width}x{rule.min_height}",
                source=source,
            )
        frames = getattr(im, "n_frames", 1) if im.format != "GIF" else None
        if getattr(im, "is_animated", False) or (frames or 1) > 1:
            if rule.multi_frame == "reject":
                return ImageOutcome(
                    "the image has several frames (animated or multi-page); the contract "
                    "accepts single-frame images only",
                    source=source,
                )
            im.seek(0)
        side = max(rule.width, rule.height)
        if im.format == "JPEG":
            im.draft("RGB" if rule.mode != "L" else "L", (side, side))
        im.load()
        upright = _upright(im)
        if upright is None:
            return ImageOutcome(_corrupt(im.format, "its EXIF metadata is damaged"), source=source)
        canonical = _fit(_to_mode(upright, rule.mode), rule)
        note = _extension_note(filename, im.format)
    buffer = io.BytesIO()
    canonical.save(buffer, format=rule.format, **_ENCODE[rule.format])
    encoded = buffer.getvalue()
    digest = hashlib.sha256(encoded).hexdigest()
    stats = pixel_stats(canonical, width * height)
    return ImageOutcome(None, encoded, digest, rule.extension, source, note, stats)


IMAGE_STATS = ("brightness", "contrast", "red", "green", "blue", "pixels")
_LUMA = np.array([0.299, 0.587, 0.114])


def pixel_stats(im: Image.Image, delivered_pixels: float) -> tuple[float, ...]:
    """The IMAGE_STATS of a canonical image: brightness and contrast (mean and spread of luma,
    0..255), mean red, green and blue, and the pixels it was delivered with (canonical images
    all share one size, so that is the size drift can compare)."""
    rgb = np.asarray(im.convert("RGB"), dtype=float).reshape(-1, 3)
    luma = rgb @ _LUMA
    red, green, blue = rgb.mean(axis=0)
    values = (luma.mean(), luma.std(), red, green, blue, delivered_pixels)
    return tuple(float(f"{float(v):.6g}") for v in values)


def _upright(im: Image.Image) -> Image.Image | None:
    """The image turned as its EXIF orientation says, or None when its EXIF cannot be read.

    Pillow rewrites the EXIF block while turning the image, and a tag of the wrong type (a
    resolution given as text, say) fails there with whatever Python raised.
    """
    try:
        return ImageOps.exif_transpose(im)
    except (ValueError, TypeError, KeyError, IndexError, SyntaxError, struct.error):
        return None


def _extension_note(filename: str, fmt: str | None) -> str | None:
    suffix = Path(filename).suffix.lower().lstrip(".")
    expected = {"JPEG": ("jpg", "jpeg"), "PNG": ("png",), "GIF": ("gif",), "TIFF": ("tif", "tiff")}
    if fmt and suffix and suffix not in expected.get(fmt, (fmt.lower(),)):
        return f"named .{suffix} but the content is {fmt}"
    return None


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert any decoded mode to the canonical one, deterministically."""
    if im.mode.startswith("I;16"):
        im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    elif im.mode in ("I", "F"):
        values = np.asarray(im, dtype=np.float64)
        finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(finite.min()), float(finite.max())
        scaled = (finite - low) * (255.0 / (high - low)) if high > low else finite * 0.0
        im = Image.fromarray(np.round(scaled).astype(np.uint8), "L")
    elif im.mode == "P" or im.mode == "1":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    if im.mode in ("LA", "RGBA", "PA") and mode != "RGBA":
        background = Image.new("RGB", im.size, _WHITE)
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        im = background
    return im.convert(mode) if im.mode != mode else im


def _fit(im: Image.Image, rule: ImageRule) -> Image.Image:
    """Centre-crop to the canonical aspect ratio and resize to the canonical size."""
    width, height = im.size
    target = rule.width / rule.height
    if width / height > target:
        crop_w, crop_h = height * target, float(height)
    else:
        crop_w, crop_h = float(width), width / target
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    return im.resize((rule.width, rule.height), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def canonicalize_file(path: str, rule: ImageRule, filename: str) -> ImageOutcome:
    """Read and canonicalize one file; a read error is a refusal like any other."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(rule.max_bytes + 1)
    except OSError as exc:
        return ImageOutcome(f"the image cannot be read: {exc.strerror or 'the read failed'}")
    return canonicalize(data, rule, filename)


def _canonicalize_job(job: tuple[str, ImageRule, str]) -> ImageOutcome:
    return canonicalize_file(*job)


def canonicalize_many(
    jobs: Sequence[tuple[str, ImageRule, str]], workers: int = 0
) -> list[ImageOutcome]:
    """Canonicalize (path, rule, name) jobs across processes; results are in job order.

    Workers are forked: they start in milliseconds with Pillow already imported. A forkserver or
    spawn worker first re-imports the parent's main module, which for the validate stage pulls in
    pandas and pandera: about 1.7 s per worker, more than a batch of images takes to process.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < _INLINE_BELOW:
        return [_canonicalize_job(job) for job in jobs]
    context = get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        chunk = max(1, len(jobs) // (workers * 8))
        return list(pool.map(_canonicalize_job, jobs, chunksize=chunk))
