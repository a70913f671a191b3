"""The claim on a real drop folder: early `_READY`, duplicates, lost and stale locks, leftovers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mainstem.errors import LockError
from mainstem.intake import dropfolder, lock
from mainstem.intake.delivery import MANIFEST, PROCESSING, READY, read_delivery
from mainstem.intake.dropfolder import Claimed, Idle, Rejected, claim_batch, release_batch
from mainstem.intake.ingest import ingest_claimed
from mainstem.intake.submit import submit
from mainstem.params import IngestParams
from tests.conftest import ingest_params

DEADLINE = 600


@pytest.fixture
def params(tmp_path: Path) -> IngestParams:
    return ingest_params(tmp_path, deadline=DEADLINE)


def _batch(folder: Path, tag: str, table_name: str = "table.csv") -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / table_name).write_text(f"item_id,image_file\n1,images/{tag}.png\n")
    (folder / "images" / f"{tag}.png").write_bytes(f"image bytes of {tag}".encode() * 50)
    return folder


def _deliver(params: IngestParams, folder: Path, name: str | None = None) -> float:
    """Submit `folder`; the mtime of its `_READY`."""
    submit([folder], params.incoming_dir, name)
    return (params.incoming_dir / READY).stat().st_mtime


def _payload(incoming: Path) -> list[str]:
    """What the drop folder holds besides the claimants' own scratch files."""
    return sorted(
        p.relative_to(incoming).as_posix()
        for p in incoming.rglob("*")
        if p.is_file() and not p.name.startswith(".claim-")
    )


def test_early_ready_waits_while_files_do_not_match_the_manifest(
    params: IngestParams, tmp_path: Path
) -> None:
    ready_at = _deliver(params, _batch(tmp_path / "b1", "a"))
    image = params.incoming_dir / "images" / "a.png"
    image.write_bytes(image.read_bytes()[:10])  # the producer is still writing it

    result = claim_batch(params, "run-1", ready_at + 1)

    assert isinstance(result, Idle)
    assert "images/a.png: size 10" in result.reason
    assert not (params.incoming_dir / PROCESSING).exists()
    assert (params.incoming_dir / READY).exists()
    assert not params.claimed_batch.exists()
    assert not params.raw_dir.exists()


def test_early_ready_is_claimed_once_the_files_catch_up(
    params: IngestParams, tmp_path: Path
) -> None:
    source = _batch(tmp_path / "b1", "a")
    ready_at = _deliver(params, source)
    image = params.incoming_dir / "images" / "a.png"
    image.write_bytes(b"")
    assert isinstance(claim_batch(params, "run-1", ready_at + 1), Idle)

    image.write_bytes((source / "images" / "a.png").read_bytes())
    result = claim_batch(params, "run-1", ready_at + 2)

    assert isinstance(result, Claimed)
    assert result.batch_id == read_delivery(source).batch_id


def test_early_ready_past_the_deadline_is_rejected_whole_into_quarantine(
    params: IngestParams, tmp_path: Path
) -> None:
    ready_at = _deliver(params, _batch(tmp_path / "b1", "a"), "late")
    image = params.incoming_dir / "images" / "a.png"
    image.write_bytes(image.read_bytes()[:10])

    result = claim_batch(params, "run-1", ready_at + DEADLINE + 1)

    assert isinstance(result, Rejected)
    report = json.loads((result.quarantine / "report.json").read_text())
    assert report["status"] == "rejected"
    assert report["stage"] == "claim"
    assert any("images/a.png: size 10" in reason for reason in report["reasons"])
    assert sorted(p.name for p in (result.quarantine / "files").rglob("*") if p.is_file()) == [
        "a.png",
        "table.csv",
    ]
    assert (result.quarantine / MANIFEST).exists()
    assert _payload(params.incoming_dir) == []
    assert not (params.incoming_dir / PROCESSING).exists()
    assert not params.raw_dir.exists()


def test_files_changing_while_claimed_hand_the_batch_back(
    params: IngestParams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready_at = _deliver(params, _batch(tmp_path / "b1", "a"))
    (params.incoming_dir / MANIFEST).unlink()  # a producer that sends no manifest
    table = params.incoming_dir / "table.csv"
    real_read = dropfolder.read_delivery

    def read_while_producer_appends(incoming: Path, apart: frozenset[str]):  # type: ignore[no-untyped-def]
        delivery = real_read(incoming, apart)
        with open(table, "a") as handle:
            handle.write("2,images/a.png\n")
        return delivery

    monkeypatch.setattr(dropfolder, "read_delivery", read_while_producer_appends)
    result = claim_batch(params, "run-1", ready_at + 1)

    assert isinstance(result, Idle)
    assert "changed while they were being claimed" in result.reason
    assert not (params.incoming_dir / PROCESSING).exists()
    assert (params.incoming_dir / READY).stat().st_mtime == ready_at
    assert not params.claimed_batch.exists()


def test_same_tables_under_another_name_are_claimed_as_a_duplicate(
    params: IngestParams, tmp_path: Path
) -> None:
    _deliver(params, _batch(tmp_path / "b1", "a"), "first")
    first = claim_batch(params, "run-1", time.time())
    assert isinstance(first, Claimed)
    assert not first.duplicate
    ingest_claimed(params)
    release_batch(params, None)

    _deliver(params, _batch(tmp_path / "b2", "a", table_name="renamed.csv"), "again")
    again = claim_batch(params, "run-2", time.time())

    assert isinstance(again, Claimed)
    assert again.batch_id == first.batch_id
    assert again.duplicate_of == {"batch_id": first.batch_id, "name": "first", "sequence": 1}
    ticket = json.loads(params.claimed_batch.read_text())
    assert ticket["name"] == "again"
    assert ticket["duplicate_of"]["name"] == "first"


def test_same_name_with_new_content_is_a_new_batch(params: IngestParams, tmp_path: Path) -> None:
    _deliver(params, _batch(tmp_path / "b1", "a"), "daily")
    first = claim_batch(params, "run-1", time.time())
    assert isinstance(first, Claimed)
    ingest_claimed(params)
    release_batch(params, None)

    _deliver(params, _batch(tmp_path / "b2", "b"), "daily")
    second = claim_batch(params, "run-2", time.time())

    assert isinstance(second, Claimed)
    assert second.batch_id != first.batch_id
    assert not second.duplicate


def test_resumed_duplicate_stays_a_duplicate(params: IngestParams, tmp_path: Path) -> None:
    _deliver(params, _batch(tmp_path / "b1", "a"), "first")
    assert isinstance(claim_batch(params, "run-1", time.time()), Claimed)
    ingest_claimed(params)
    release_batch(params, None)
    _deliver(params, _batch(tmp_path / "b2", "a"), "again")
    assert isinstance(claim_batch(params, "run-2", time.time()), Claimed)

    resumed = claim_batch(params, "run-2", time.time())

    assert isinstance(resumed, Claimed)
    assert resumed.resumed
    assert resumed.duplicate


def test_holder_whose_lock_was_recovered_cannot_renew_it(
    params: IngestParams, tmp_path: Path
) -> None:
    now = _deliver(params, _batch(tmp_path / "b1", "a"))
    zombie = claim_batch(params, "zombie", now)
    assert isinstance(zombie, Claimed)
    later = now + params.stale_lock_seconds + 1

    rescuer = claim_batch(params, "rescuer", later)

    assert isinstance(rescuer, Claimed)
    assert rescuer.recovered_from is not None
    with pytest.raises(LockError, match="lost the batch lock"):
        lock.heartbeat(params.incoming_dir, zombie.owner, later + 1)
    holder = lock.read_owner(params.incoming_dir)
    assert holder is not None
    assert holder.run_id == "rescuer"


def test_holder_whose_lock_was_recovered_cannot_release_it(
    params: IngestParams, tmp_path: Path
) -> None:
    now = _deliver(params, _batch(tmp_path / "b1", "a"))
    zombie = claim_batch(params, "zombie", now)
    assert isinstance(zombie, Claimed)
    ingest_claimed(params)
    rescuer = claim_batch(params, "rescuer", now + params.stale_lock_seconds + 1)
    assert isinstance(rescuer, Claimed)

    delivered = _payload(params.incoming_dir)
    with pytest.raises(LockError, match=r"lost the batch lock.*rescuer"):
        release_batch(params, None, zombie.owner)
    assert _payload(params.incoming_dir) == delivered
    with pytest.raises(LockError, match=r"did not release the batch lock.*rescuer"):
        lock.release(params.incoming_dir, zombie.owner)

    holder = lock.read_owner(params.incoming_dir)
    assert holder is not None
    assert holder.run_id == "rescuer"
    release_batch(params, None, rescuer.owner)
    assert lock.read_owner(params.incoming_dir) is None


def test_claimant_that_links_after_the_batch_was_released_drops_its_lock(
    params: IngestParams, tmp_path: Path
) -> None:
    now = _deliver(params, _batch(tmp_path / "b1", "a"))
    late = lock.owner_for("late", now)
    first = claim_batch(params, "first", now)
    assert isinstance(first, Claimed)
    ingest_claimed(params)
    release_batch(params, None)

    assert lock.acquire(params.incoming_dir, late, ready_required=True) is False
    assert lock.read_owner(params.incoming_dir) is None
