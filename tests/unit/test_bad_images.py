"""Bad images end in ACCEPT or a REJECT that says what is wrong: one delivered file per case."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from mainstem.validation.batch import BatchResult
from mainstem.validation.contract import Contract
from tests.unit.raw_batches import (
    csv_bytes,
    encode,
    image_rule,
    png,
    reasons,
    row,
    validate_files,
    variant,
)

EVERY_FORMAT = image_rule(formats=["JPEG", "PNG", "GIF", "TIFF"])
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def _validate_image(
    tmp_path: Path, name: str, data: bytes, contract: Contract | None = None
) -> BatchResult:
    """A one-row batch whose row links `name`, delivered with `data`."""
    files = {"t.csv": csv_bytes([row(1, image_file=name)]), name: data}
    return validate_files(tmp_path / "batch", files, contract)


def _canonical(result: BatchResult) -> np.ndarray:
    """The pixels of the one canonical image the batch stored."""
    (data,) = result.canonical.values()
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size, im.mode) == ("PNG", (64, 64), "RGB")
        return np.asarray(im, dtype=np.int16)


def _refusal(result: BatchResult) -> str:
    assert result.accepted.empty
    (reason,) = reasons(result)
    return reason


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims `width` x `height` one-bit pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _gif_of_frames(frames: int) -> bytes:
    """A GIF of `frames` plain 2000x2000 frames, made by repeating one frame's 4 KB of bytes.

    Decoding every frame takes minutes; the first alone, a fraction of a second.
    """
    single = encode(Image.new("P", (2000, 2000), 1), "GIF")
    screen_end = 13 + 3 * 2 ** ((single[10] & 0x07) + 1)  # header, screen, global palette
    return b"GIF89a" + single[6:screen_end] + single[screen_end:-1] * frames + b";"


# empty and truncated files


@pytest.mark.parametrize("name", ["a.jpg", "a.png"])
def test_a_zero_byte_image_rejects_its_row(tmp_path: Path, name: str) -> None:
    result = _validate_image(tmp_path, name, b"")
    assert _refusal(result) == f"image_file: {name}: the image file is empty (0 bytes)"


@pytest.mark.parametrize(
    ("name", "fmt", "keep"),
    [
        ("a.jpg", "JPEG", 0.5),  # cut inside the scan data
        ("a.jpg", "JPEG", -2),  # only the end-of-image marker missing
        ("a.png", "PNG", 0.5),  # cut inside the image data
        ("a.png", "PNG", -12),  # only the IEND chunk missing
    ],
)
def test_a_truncated_image_rejects_its_row(
    tmp_path: Path, name: str, fmt: str, keep: float
) -> None:
    pixels = np.random.default_rng(5).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), fmt)
    cut = data[: int(len(data) * keep)] if keep > 0 else data[: int(keep)]
    result = _validate_image(tmp_path, name, cut)
    assert _refusal(result) == (
        f"image_file: {name}: the image file is truncated (its data ends early); "
        "deliver the complete file"
    )
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# corrupt files

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _with_chunk_crc(data: bytes, kind: bytes, crc: int) -> bytes:
    """`data` (a PNG) with the checksum of its first `kind` chunk replaced by `crc`."""
    start = data.index(kind) - 4
    end = start + 8 + struct.unpack(">I", data[start : start + 4])[0]
    return data[:end] + struct.pack(">I", crc) + data[end + 4 :]


def _unidentifiable_pngs() -> dict[str, bytes]:
    valid = png()
    bad_depth = _chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 3, 2, 0, 0, 0))
    return {
        "the signature alone": _SIGNATURE,
        "a header with a bad checksum": _with_chunk_crc(valid, b"IHDR", 0),
        "a header declaring 3-bit colour": _SIGNATURE + bad_depth + valid[33:],
        "garbage after the signature": _SIGNATURE + bytes(range(256)) * 4,
    }


@pytest.mark.parametrize("case", sorted(_unidentifiable_pngs()))
def test_a_png_pillow_cannot_identify_is_called_a_corrupt_png(tmp_path: Path, case: str) -> None:
    result = _validate_image(tmp_path, "a.png", _unidentifiable_pngs()[case])
    assert _refusal(result) == (
        "image_file: a.png: the file is a corrupt or truncated PNG (its header cannot be read); "
        "re-export the image"
    )


def test_a_jpeg_pillow_cannot_identify_is_called_a_corrupt_jpeg(tmp_path: Path) -> None:
    result = _validate_image(tmp_path, "a.jpg", b"\xff\xd8\xff" + b"not a jpeg" * 20)
    assert _refusal(result) == (
        "image_file: a.jpg: the file is a corrupt or truncated JPEG (its header cannot be read); "
        "re-export the image"
    )


def _jpeg_with_text_resolution() -> bytes:
    """A turned JPEG whose EXIF gives its resolution as text, which Pillow fails on."""
    exif = Image.Exif()
    exif[0x010F] = "cam"  # Make, ASCII: its tag number is patched to XResolution below
    exif[0x0112] = 6
    data = encode(Image.new("RGB", (32, 32), RED), "JPEG", exif=exif)
    return data.replace(b"\x01\x0f\x00\x02", b"\x01\x1a\x00\x02", 1)


def _corrupt_images() -> dict[str, tuple[str, bytes]]:
    pixels = np.random.default_rng(7).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    jpeg, rgb_png = encode(Image.fromarray(pixels), "JPEG"), encode(Image.fromarray(pixels), "PNG")
    palette = encode(Image.new("P", (32, 32), 1), "PNG")
    after_plte = palette.index(b"IDAT") - 4
    gif = bytearray(encode(Image.new("P", (32, 32), 1), "GIF"))
    gif[gif.index(b"\x2c\x00\x00\x00\x00") + 10] = 12  # an LZW code size GIF does not allow
    return {
        "truncated jpeg": ("a.jpg", jpeg[: len(jpeg) // 2]),
        "truncated png": ("a.png", rgb_png[: len(rgb_png) // 2]),
        "png with a bad image-data checksum": ("a.png", _with_chunk_crc(rgb_png, b"IDAT", 0)),
        "png with garbage after its header": ("a.png", rgb_png[:33] + b"\x00" * 200),
        "png whose transparency outgrows its palette": (
            "a.png",
            palette[:after_plte] + _chunk(b"tRNS", b"\x00" * 300) + palette[after_plte:],
        ),
        "gif with a bad compression setting": ("a.gif", bytes(gif)),
        "jpeg with a resolution given as text": ("a.jpg", _jpeg_with_text_resolution()),
        "jpeg with garbage after its markers": ("a.jpg", jpeg[:200] + bytes(range(256)) * 8),
    }


@pytest.mark.parametrize("case", sorted(_corrupt_images()))
def test_a_corrupt_image_is_refused_in_a_sentence_without_decoder_internals(
    tmp_path: Path, case: str
) -> None:
    name, data = _corrupt_images()[case]
    reason = _refusal(_validate_image(tmp_path, name, data, variant(tmp_path, EVERY_FORMAT)))
    assert reason.startswith(f"image_file: {name}: the ")
    assert reason.endswith(("; re-export the image", "; deliver the complete file"))
    assert not re.search(r"Error|Exception|Traceback|b'|\\x", reason), reason


def test_a_damaged_png_checksum_is_named(tmp_path: Path) -> None:
    result = _validate_image(tmp_path, "a.png", _with_chunk_crc(png(), b"IDAT", 0))
    assert _refusal(result) == (
        "image_file: a.png: the file is a corrupt PNG (a checksum does not match its data); "
        "re-export the image"
    )


def test_damaged_exif_is_named(tmp_path: Path) -> None:
    result = _validate_image(tmp_path, "a.jpg", _jpeg_with_text_resolution())
    assert _refusal(result) == (
        "image_file: a.jpg: the file is a corrupt JPEG (its EXIF metadata is damaged); "
        "re-export the image"
    )


# decompression bombs


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (7_000, 7_000)])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, width: int, height: int
) -> None:
    result = _validate_image(tmp_path, "a.png", _png_declaring(width, height))
    assert _refusal(result) == (
        "image_file: a.png: refused as a decompression bomb: it declares more than 40000000 "
        "pixels (the contract's max_pixels); deliver a smaller image"
    )


def test_a_png_text_chunk_that_expands_hugely_is_refused(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * 5_000_000, zip=True)
    data = encode(Image.new("RGB", (32, 32)), "PNG", pnginfo=info)
    assert len(data) < 50_000
    result = _validate_image(tmp_path, "a.png", data)
    assert "refused as a decompression bomb: its PNG text chunks expand" in _refusal(result)


def test_many_png_text_chunks_that_expand_hugely_are_refused(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    for index in range(80):
        info.add_text(f"k{index}", "A" * 1_000_000, zip=True)
    data = encode(Image.new("RGB", (32, 32)), "PNG", pnginfo=info)
    result = _validate_image(tmp_path, "a.png", data)
    assert "refused as a decompression bomb: its PNG text chunks expand" in _refusal(result)


@pytest.mark.timeout(30)
def test_a_gif_of_thousands_of_large_frames_is_decided_by_its_first_frame(
    tmp_path: Path,
) -> None:
    data = _gif_of_frames(3000)
    first = variant(tmp_path, lambda d: (EVERY_FORMAT(d), image_rule(multi_frame="first")(d)))
    result = _validate_image(tmp_path, "a.gif", data, first)
    assert result.accepted["item_id"].tolist() == [1]


@pytest.mark.timeout(30)
def test_a_gif_of_thousands_of_large_frames_is_refused_when_frames_are_rejected(
    tmp_path: Path,
) -> None:
    result = _validate_image(
        tmp_path, "a.gif", _gif_of_frames(3000), variant(tmp_path, EVERY_FORMAT)
    )
    assert "several frames" in _refusal(result)


# formats


def test_a_png_named_jpg_is_accepted_with_a_note(tmp_path: Path) -> None:
    result = _validate_image(tmp_path, "a.jpg", png())
    assert result.accepted["item_id"].tolist() == [1]
    assert result.report()["images"][0]["note"] == "named .jpg but the content is PNG"


def test_a_pdf_named_png_rejects_its_row(tmp_path: Path) -> None:
    pdf = b"%PDF-1.7\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
    result = _validate_image(tmp_path, "a.png", pdf)
    assert _refusal(result) == "image_file: a.png: the file is PDF; allowed formats are JPEG, PNG"


@pytest.mark.parametrize(
    ("fmt", "named"),
    [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF"), ("WEBP", "WEBP")],
)
def test_a_format_outside_the_allowlist_rejects_its_row(
    tmp_path: Path, fmt: str, named: str
) -> None:
    data = encode(Image.new("RGB", (32, 32), RED), fmt)
    result = _validate_image(tmp_path, "a.png", data)
    assert (
        _refusal(result) == f"image_file: a.png: the file is {named}; allowed formats are JPEG, PNG"
    )


# modes


def _accepted_pixels(tmp_path: Path, image: Image.Image, fmt: str, **options: object) -> np.ndarray:
    contract = variant(tmp_path, EVERY_FORMAT)
    name = {"PNG": "a.png", "JPEG": "a.jpg", "TIFF": "a.tif"}[fmt]
    result = _validate_image(tmp_path, name, encode(image, fmt, **options), contract)
    assert result.accepted["item_id"].tolist() == [1]
    return _canonical(result)


def test_a_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    pixels = _accepted_pixels(tmp_path, Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")
    assert np.abs(pixels - RED).max() <= 8


def test_transparent_palette_pixels_become_white(tmp_path: Path) -> None:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.paste(1, (16, 0, 32, 32))
    pixels = _accepted_pixels(tmp_path, image, "PNG", transparency=0)
    assert pixels[32, 8].tolist() == [255, 255, 255]
    assert pixels[32, 56].tolist() == list(RED)


def test_transparent_rgba_pixels_become_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (16, 0, 32, 32))
    pixels = _accepted_pixels(tmp_path, image, "PNG")
    assert pixels[32, 8].tolist() == [255, 255, 255]
    assert pixels[32, 56].tolist() == list(BLUE)


def test_transparent_grey_alpha_pixels_become_white(tmp_path: Path) -> None:
    image = Image.new("LA", (32, 32), (0, 0))
    image.paste((0, 255), (16, 0, 32, 32))
    pixels = _accepted_pixels(tmp_path, image, "PNG")
    assert pixels[32, 8].tolist() == [255, 255, 255]
    assert pixels[32, 56].tolist() == [0, 0, 0]


def test_sixteen_bit_grey_keeps_its_high_byte(tmp_path: Path) -> None:
    image = Image.new("I;16", (32, 32), 0x8040)
    pixels = _accepted_pixels(tmp_path, image, "PNG")
    assert pixels.min() == pixels.max() == 0x80


def test_one_bit_pixels_become_black_and_white(tmp_path: Path) -> None:
    image = Image.new("1", (32, 32), 0)
    image.paste(1, (16, 0, 32, 32))
    pixels = _accepted_pixels(tmp_path, image, "PNG")
    assert pixels[32, 8].tolist() == [0, 0, 0]
    assert pixels[32, 56].tolist() == [255, 255, 255]


def test_float_pixels_are_scaled_to_the_full_grey_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(-1.5, 1e6, 32, dtype=np.float32), (32, 1))
    pixels = _accepted_pixels(tmp_path, Image.fromarray(ramp, "F"), "TIFF")
    assert pixels[32, 0].tolist() == [0, 0, 0]
    assert pixels[32, 63].tolist() == [255, 255, 255]


# orientation


def _quadrants() -> Image.Image:
    """Four colours in four quadrants: every flip and rotation gives a different picture."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:32, :32], pixels[:32, 32:] = RED, GREEN
    pixels[32:, :32], pixels[32:, 32:] = BLUE, YELLOW
    return Image.fromarray(pixels)


# The transpose that stores an upright picture so that EXIF orientation k shows it upright.
_STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(_STORED_AS))
def test_exif_orientation_is_applied_to_the_canonical_image(
    tmp_path: Path, orientation: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = _quadrants().transpose(_STORED_AS[orientation])
    data = encode(stored, "JPEG", quality=95, exif=exif)
    pixels = _canonical(_validate_image(tmp_path, "a.jpg", data))
    corners = [pixels[16, 16], pixels[16, 48], pixels[48, 16], pixels[48, 48]]
    for seen, expected in zip(corners, [RED, GREEN, BLUE, YELLOW], strict=True):
        assert np.abs(seen - expected).max() <= 8


# several frames


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]


def _animation(fmt: str) -> bytes:
    first, *rest = _frames()
    return encode(first, fmt, save_all=True, append_images=rest)


SEVERAL_FRAMES = [("GIF", "a.gif"), ("PNG", "a.png"), ("TIFF", "a.tif")]  # PNG: APNG


@pytest.mark.parametrize(("fmt", "name"), SEVERAL_FRAMES)
def test_several_frames_keep_the_first_when_the_contract_says_first(
    tmp_path: Path, fmt: str, name: str
) -> None:
    first = variant(tmp_path, lambda d: (EVERY_FORMAT(d), image_rule(multi_frame="first")(d)))
    pixels = _canonical(_validate_image(tmp_path, name, _animation(fmt), first))
    assert np.abs(pixels - RED).max() <= 2


@pytest.mark.parametrize(("fmt", "name"), SEVERAL_FRAMES)
def test_several_frames_reject_the_row_when_the_contract_says_reject(
    tmp_path: Path, fmt: str, name: str
) -> None:
    result = _validate_image(tmp_path, name, _animation(fmt), variant(tmp_path, EVERY_FORMAT))
    assert _refusal(result) == (
        f"image_file: {name}: the image has several frames (animated or multi-page); "
        "the contract accepts single-frame images only"
    )


# links between rows and files


def test_an_image_two_rows_share_is_stored_once_for_both(tmp_path: Path) -> None:
    files = {"t.csv": csv_bytes([row(1), row(2)]), "a.png": png()}
    result = validate_files(tmp_path, files)
    (stored,) = result.canonical
    assert result.accepted["image_file"].tolist() == [stored, stored]
    assert [(image.path, image.rows) for image in result.images] == [("a.png", 2)]


def test_an_image_a_row_names_but_the_batch_lacks_rejects_the_batch(tmp_path: Path) -> None:
    files = {"t.csv": csv_bytes([row(1), row(2, image_file="missing.png")]), "a.png": png()}
    result = validate_files(tmp_path, files)
    assert result.status == "rejected"
    assert result.problems == [
        "t.csv:line 3: image_file: links to 'missing.png', which is not in the batch"
    ]
    assert result.accepted.empty


def test_an_image_no_row_names_is_reported_and_not_stored(tmp_path: Path) -> None:
    files = {"t.csv": csv_bytes([row(1)]), "a.png": png(), "spare.png": png(colour=RED)}
    result = validate_files(tmp_path, files)
    assert result.status == "accepted"
    assert result.report()["unreferenced_files"] == ["spare.png"]
    assert len(result.canonical) == 1
