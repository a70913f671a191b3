"""Hostile paths: links in the image column, and entries in the drop folder that are not files.

A link may only name a file of its own batch, exactly; the drop folder may only hold regular
files. Each case ends in a row or batch refused with a reason, and nothing outside is read.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
import unicodedata
from pathlib import Path

import pytest

from mainstem.intake.delivery import READY, hash_file, read_delivery
from mainstem.intake.dropfolder import Claimed, Idle, Rejected, claim_batch
from mainstem.params import IngestParams, load_params
from mainstem.validation.batch import BatchResult
from tests.unit.raw_batches import ROOT, csv_bytes, png, reasons, row, validate_files

# links in the image column


def _link(tmp_path: Path, link: str, files: dict[str, bytes] | None = None) -> BatchResult:
    """A batch of a good row and a row whose image link is `link`."""
    delivered = {"t.csv": csv_bytes([row(1), row(2, image_file=link)]), "a.png": png()}
    return validate_files(tmp_path / "batch", {**delivered, **(files or {})})


def _refused_row(result: BatchResult) -> str:
    """The second row's reason; the first row is accepted and no outside image was read."""
    assert result.accepted["item_id"].tolist() == [1]
    assert [image.path for image in result.images] == ["a.png"]
    (reason,) = reasons(result)
    return reason


def test_a_link_climbing_out_of_the_batch_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "batch" / "outside.png"  # files/../outside.png
    outside.parent.mkdir(parents=True)
    outside.write_bytes(png())
    reason = _refused_row(_link(tmp_path, "../outside.png"))
    assert reason == "image_file: the link leaves the batch ('..')"


def test_a_link_climbing_out_through_a_folder_is_refused(tmp_path: Path) -> None:
    result = _link(tmp_path, "images/../../outside.png", {"images/b.png": png()})
    assert _refused_row(result) == "image_file: the link leaves the batch ('..')"


def test_an_absolute_link_to_a_real_image_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(png())
    reason = _refused_row(_link(tmp_path, str(outside)))
    assert reason == ("image_file: the link is an absolute path; use a path relative to the batch")


def test_a_windows_drive_link_is_refused(tmp_path: Path) -> None:
    reason = _refused_row(_link(tmp_path, "C:/images/a.png"))
    assert reason == ("image_file: the link is an absolute path; use a path relative to the batch")


def test_a_link_with_backslashes_is_refused_even_if_the_file_exists(tmp_path: Path) -> None:
    result = _link(tmp_path, "images\\b.png", {"images/b.png": png()})
    assert result.accepted["item_id"].tolist() == [1]
    assert reasons(result) == ["image_file: the link uses backslashes; separate folders with '/'"]


def test_a_link_with_a_nul_byte_is_refused(tmp_path: Path) -> None:
    reason = _refused_row(_link(tmp_path, "a.png\x00.jpg"))
    assert reason == "image_file: the link contains a NUL byte"


def test_a_url_link_is_refused(tmp_path: Path) -> None:
    reason = _refused_row(_link(tmp_path, "file:///etc/passwd"))
    assert reason == ("image_file: the link is a URL; images must be delivered inside the batch")


def test_a_link_in_another_unicode_normalisation_is_refused_not_guessed(
    tmp_path: Path,
) -> None:
    composed = unicodedata.normalize("NFC", "café.png")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    reason = _refused_row(_link(tmp_path, decomposed, {composed: png()}))
    assert reason == (
        f"image_file: the link matches {composed!r} only if case and Unicode normalisation "
        "are ignored; use the file's exact name"
    )


def test_a_link_in_full_width_letters_is_refused_not_guessed(tmp_path: Path) -> None:
    full_width = "\uff42.png"  # FULLWIDTH LATIN SMALL LETTER B
    reason = _refused_row(_link(tmp_path, full_width, {"b.png": png()}))
    assert "only if case and Unicode normalisation are ignored" in reason


@pytest.mark.parametrize("hidden", ["\u200b", "\u202e", "\u2028"])
def test_a_link_with_invisible_characters_is_refused(tmp_path: Path, hidden: str) -> None:
    reason = _refused_row(_link(tmp_path, f"a{hidden}.png", {f"a{hidden}.png": png()}))
    assert reason == "image_file: the link contains invisible or control characters"


@pytest.mark.timeout(30)
def test_many_broken_links_among_many_files_are_reported_without_stalling(
    tmp_path: Path,
) -> None:
    count = 8000  # this took over a minute when each broken link refolded every file name
    rows = [row(i, image_file=f"photos/missing-{i}.png") for i in range(count)]
    files = {f"photos/{i}.png": b"" for i in range(count)}
    result = validate_files(tmp_path, {"t.csv": csv_bytes(rows), **files})
    assert result.status == "rejected"
    assert len(result.problems) == count
    assert result.problems[0] == (
        "t.csv:line 2: image_file: links to 'photos/missing-0.png', which is not in the batch"
    )


def test_each_row_of_a_batch_rejected_for_many_problems_names_the_first_few(
    tmp_path: Path,
) -> None:
    rows = [row(i, image_file=f"missing-{i}.png") for i in range(5)]
    result = validate_files(tmp_path, {"t.csv": csv_bytes(rows)})
    assert reasons(result)[0] == (
        "batch rejected: t.csv:line 2: image_file: links to 'missing-0.png', which is not in "
        "the batch; t.csv:line 3: image_file: links to 'missing-1.png', which is not in the "
        "batch; t.csv:line 4: image_file: links to 'missing-2.png', which is not in the batch; "
        "and 2 more problem(s), listed in the report"
    )
    assert len(result.report()["reasons"]) == 5


# the drop folder


def _params(tmp_path: Path) -> IngestParams:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    params = load_params(tmp_path).ingest
    params.incoming_dir.mkdir(parents=True)
    return params


def _deliver(params: IngestParams) -> Path:
    """A good delivery in the drop folder, not yet marked ready."""
    incoming = params.incoming_dir
    (incoming / "t.csv").write_bytes(csv_bytes([row(1)]))
    (incoming / "a.png").write_bytes(png())
    return incoming


def _claim(params: IngestParams, now: float | None = None) -> Claimed | Idle | Rejected:
    (params.incoming_dir / READY).touch()
    return claim_batch(params, "test-run", time.time() if now is None else now)


def _rejected_for(params: IngestParams, entry: str) -> tuple[str, ...]:
    """The claim's reasons; the whole delivery, `entry` included, is moved to quarantine."""
    result = _claim(params)
    assert isinstance(result, Rejected)
    assert sorted(os.listdir(params.incoming_dir)) == []
    moved = result.quarantine / "files" / entry
    assert os.path.lexists(moved)
    return result.reasons


def test_a_symlink_in_the_drop_folder_rejects_the_delivery_without_reading_it(
    tmp_path: Path,
) -> None:
    params = _params(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the pipeline")
    os.symlink(secret, _deliver(params) / "b.png")
    assert _rejected_for(params, "b.png") == ("b.png: a symlink; only regular files",)
    assert secret.read_text() == "not for the pipeline"


def test_a_symlinked_folder_in_the_drop_folder_rejects_the_delivery(tmp_path: Path) -> None:
    params = _params(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "b.png").write_bytes(png())
    os.symlink(tmp_path / "photos", _deliver(params) / "photos")
    assert _rejected_for(params, "photos") == ("photos: a symlink; only regular files",)
    assert (tmp_path / "photos" / "b.png").exists()


def test_a_hardlink_to_a_file_outside_the_batch_rejects_the_delivery(tmp_path: Path) -> None:
    params = _params(tmp_path)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png())
    os.link(outside, _deliver(params) / "b.png")
    assert _rejected_for(params, "b.png") == ("b.png: a hardlink to a file outside the batch",)
    assert outside.read_bytes() == png()


def test_two_names_for_one_file_inside_the_batch_are_accepted(tmp_path: Path) -> None:
    params = _params(tmp_path)
    incoming = _deliver(params)
    os.link(incoming / "a.png", incoming / "b.png")
    assert isinstance(_claim(params), Claimed)


@pytest.mark.timeout(20)
def test_a_fifo_in_the_drop_folder_rejects_the_delivery_without_hanging(tmp_path: Path) -> None:
    params = _params(tmp_path)
    os.mkfifo(_deliver(params) / "b.png")
    assert _rejected_for(params, "b.png") == ("b.png: a FIFO; only regular files",)


@pytest.mark.timeout(20)
def test_reading_the_drop_folder_lists_a_fifo_as_a_problem_without_hanging(
    tmp_path: Path,
) -> None:
    params = _params(tmp_path)
    incoming = _deliver(params)
    os.mkfifo(incoming / "b.png")
    delivery = read_delivery(incoming)
    assert [p.describe() for p in delivery.problems] == ["b.png: a FIFO; only regular files"]
    assert [f.path for f in delivery.files] == ["a.png", "t.csv"]


@pytest.mark.timeout(20)
def test_hashing_a_fifo_swapped_in_after_the_scan_fails_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "b.png")
    with pytest.raises(OSError, match="is not a regular file"):
        hash_file(tmp_path / "b.png")


@pytest.mark.timeout(20)
def test_a_fifo_as_the_manifest_does_not_hang_the_claim_and_is_rejected_at_the_deadline(
    tmp_path: Path,
) -> None:
    params = _params(tmp_path)
    os.mkfifo(_deliver(params) / "_MANIFEST.json")
    assert isinstance(_claim(params), Idle)
    late = time.time() + params.manifest_deadline_seconds + 1
    result = _claim(params, now=late)
    assert isinstance(result, Rejected)
    assert "_MANIFEST.json is unreadable or malformed" in result.reasons[0]


def test_a_dangling_symlink_as_the_manifest_is_not_taken_for_no_manifest(
    tmp_path: Path,
) -> None:
    params = _params(tmp_path)
    os.symlink(tmp_path / "nowhere.json", _deliver(params) / "_MANIFEST.json")
    late = time.time() + params.manifest_deadline_seconds + 1
    result = _claim(params, now=late)
    assert isinstance(result, Rejected)
    assert "_MANIFEST.json is unreadable or malformed" in result.reasons[0]


@pytest.mark.parametrize(
    ("kind", "device"),
    [(stat.S_IFCHR, os.makedev(1, 3)), (stat.S_IFBLK, os.makedev(7, 0))],
    ids=["character", "block"],
)
def test_a_device_file_in_the_drop_folder_rejects_the_delivery(
    tmp_path: Path, kind: int, device: int
) -> None:
    params = _params(tmp_path)
    try:
        os.mknod(_deliver(params) / "b.png", 0o600 | kind, device)
    except PermissionError:
        pytest.skip("creating a device file needs root (CAP_MKNOD)")
    assert _rejected_for(params, "b.png") == ("b.png: a device file; only regular files",)


def test_a_socket_in_the_drop_folder_rejects_the_delivery(tmp_path: Path) -> None:
    params = _params(tmp_path)
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(_deliver(params) / "b.sock"))
        assert _rejected_for(params, "b.sock") == ("b.sock: a socket; only regular files",)
    finally:
        listener.close()


def test_a_file_name_that_is_not_utf8_rejects_the_delivery(tmp_path: Path) -> None:
    params = _params(tmp_path)
    name = os.fsdecode(b"b\xff.png")
    (_deliver(params) / name).write_bytes(png())
    assert _rejected_for(params, name) == ("b\\xff.png: file name is not valid UTF-8",)
