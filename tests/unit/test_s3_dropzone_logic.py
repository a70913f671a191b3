"""The S3 drop zone's pure parts: key layout, the queue order, lease moves, S3 answers, params."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError, EndpointConnectionError

from mainstem.errors import (
    DropZoneAccessDeniedError,
    DropZoneBucketMissingError,
    DropZoneError,
    DropZoneUnreachableError,
    ParamsError,
)
from mainstem.intake.lock import LockOwner
from mainstem.intake.s3_client import S3Answer, drop_zone_errors, outcome_of, retried
from mainstem.intake.s3_dropzone import safe_relative
from mainstem.intake.s3_layout import (
    DropZone,
    Listed,
    check_batch_name,
    entries_of,
    oldest_first,
    parse_drop_zone,
    payload_of,
)
from mainstem.intake.s3_lease import decode, encode, next_move
from mainstem.params import load_params
from tests.conftest import ROOT, ingest_params

ZONE = DropZone("bucket", "drop/zone")


def test_a_drop_zone_url_names_its_bucket_and_prefix() -> None:
    assert parse_drop_zone("s3://bucket/drop/zone/") == ZONE
    assert parse_drop_zone("s3://bucket") == DropZone("bucket", "")
    assert ZONE.url == "s3://bucket/drop/zone"


@pytest.mark.parametrize(
    "url", ["bucket/drop", "s3://B/drop", "s3://bucket/a//b", "s3://bucket/a/../b", "s3://x"]
)
def test_a_malformed_drop_zone_url_is_a_params_error(url: str) -> None:
    with pytest.raises(ParamsError, match="drop zone"):
        parse_drop_zone(url)


def test_a_batch_lives_under_one_prefix_with_its_control_objects() -> None:
    assert ZONE.entry_prefix("b1") == "drop/zone/b1/"
    assert ZONE.file_key("b1", "images/1.png") == "drop/zone/b1/images/1.png"
    assert ZONE.ready_key("b1") == "drop/zone/b1/_READY"
    assert ZONE.lease_key("b1") == "drop/zone/b1/_PROCESSING"
    assert ZONE.manifest_key("b1") == "drop/zone/b1/_MANIFEST.json"
    assert ZONE.quarantine_prefix("abc") == "drop/zone/_quarantine/abc/"
    assert DropZone("bucket", "").ready_key("b1") == "b1/_READY"


@pytest.mark.parametrize("name", ["", "_quarantine", ".hidden", "a/b", "x" * 201, "é"])
def test_a_name_that_cannot_be_a_batch_prefix_is_refused(name: str) -> None:
    with pytest.raises(ParamsError, match="batch name"):
        check_batch_name(name)


def _listing(*items: tuple[str, float]) -> list[Listed]:
    return [Listed(f"drop/zone/{key}", at) for key, at in items]


def test_a_listing_groups_objects_by_batch_and_leaves_quarantine_and_strays_out() -> None:
    listing = [
        *_listing(
            ("b1/t.csv", 1),
            ("b1/_READY", 5),
            ("b2/t.csv", 2),
            ("b3/t.csv", 1),
            ("b3/_READY", 3),
            ("b3/_PROCESSING", 4),
            ("_quarantine/abc/report.json", 1),
            ("stray.txt", 1),
        ),
        Listed("other/b9/_READY", 1),
    ]
    entries = {e.name: e for e in entries_of(ZONE, listing)}
    assert sorted(entries) == ["b1", "b2", "b3"]
    assert entries["b1"].claimable
    assert entries["b2"].ready_at is None  # still being written
    assert not entries["b2"].claimable
    assert entries["b3"].leased
    assert not entries["b3"].claimable


def test_the_queue_is_oldest_ready_first_whatever_the_names() -> None:
    listing = _listing(("a/_READY", 30), ("z/_READY", 10), ("m/_READY", 20), ("n/_READY", 20))
    assert [e.name for e in oldest_first(entries_of(ZONE, listing))] == ["z", "m", "n", "a"]


def test_a_claim_fetches_files_and_manifest_but_not_the_markers() -> None:
    keys = [ZONE.file_key("b1", k) for k in ("_READY", "_PROCESSING", "_MANIFEST.json", "t.csv")]
    assert payload_of(ZONE, "b1", [*keys, "drop/zone/b10/t.csv"]) == ["_MANIFEST.json", "t.csv"]


@pytest.mark.parametrize(
    ("rel", "safe"),
    [("t.csv", True), ("images/1.png", True), ("../x", False), ("a/../../x", False),
     ("/etc/passwd", False), ("a//b", False), ("./a", False)],
)  # fmt: skip
def test_only_paths_that_stay_inside_the_batch_are_fetched(rel: str, safe: bool) -> None:
    assert safe_relative(rel) is safe


def _owner(run_id: str, heartbeat: float, **extra: object) -> LockOwner:
    fields: dict = {"host": "elsewhere", "pid": 1, "pid_started": 1.0}
    fields.update(extra)
    return LockOwner(run_id, claimed_at=heartbeat, heartbeat_at=heartbeat, **fields)


@pytest.mark.parametrize(
    ("holder", "ready", "now", "move"),
    [
        (None, True, 100, "create"),
        (None, False, 100, "skip"),
        (_owner("run-me", 0), True, 100, "resume"),
        (_owner("run-other", 50), True, 100, "wait"),
        (_owner("run-other", 50), True, 111, "take-over"),
        (_owner("run-other", 99, given_up=True), True, 100, "take-over"),
        (_owner("run-other", 0), False, 100, "take-over"),  # a release cut short
    ],
)
def test_what_a_claimant_does_with_a_batch(
    holder: LockOwner | None, ready: bool, now: float, move: str, tmp_path: Path
) -> None:
    params = ingest_params(tmp_path, stale=60)
    assert next_move(holder, ready, "run-me", now, params) == move


def test_a_lease_body_round_trips_and_an_unreadable_one_reads_as_unknown() -> None:
    owner = _owner("run-1", 5.0, batch_id="abc")
    assert decode(encode(owner), 0.0) == owner
    unknown = decode(b"not json", 42.0)
    assert unknown.run_id == "unknown"
    assert unknown.heartbeat_at == 42.0


def test_two_claimants_never_write_the_same_lease_bytes() -> None:
    assert encode(_owner("run-1", 5.0)) != encode(_owner("run-2", 5.0))


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (412, "PreconditionFailed", "lost"),
        (409, "ConditionalRequestConflict", "retry"),
        (503, "SlowDown", "retry"),
        (404, "NoSuchKey", "missing"),
        (404, "NoSuchBucket", "no-bucket"),
        (403, "AccessDenied", "denied"),
        (403, "SignatureDoesNotMatch", "denied"),
        (400, "InvalidArgument", "other"),
    ],
)
def test_what_an_s3_answer_means(status: int, code: str, outcome: str) -> None:
    assert outcome_of(status, code) == outcome


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


@pytest.mark.parametrize(
    ("error", "raised", "words"),
    [
        (_client_error(404, "NoSuchBucket"), DropZoneBucketMissingError, "does not exist"),
        (_client_error(403, "AccessDenied"), DropZoneAccessDeniedError, "denied"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), DropZoneUnreachableError,
         "unreachable"),
    ],
)  # fmt: skip
def test_a_failure_the_operator_must_fix_is_one_line_saying_what(
    error: Exception, raised: type[Exception], words: str
) -> None:
    with pytest.raises(raised, match=words) as caught, drop_zone_errors("claim", "s3://b/p"):
        raise error
    assert "\n" not in str(caught.value)


def test_a_lost_condition_is_left_to_the_protocol() -> None:
    with pytest.raises(S3Answer) as caught, drop_zone_errors("claim", "s3://b/p"):
        raise _client_error(412, "PreconditionFailed")
    assert caught.value.outcome == "lost"


def _params_with(tmp_path: Path, **ingest: object) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["ingest"].update(ingest)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return tmp_path


def test_an_s3_incoming_dir_selects_the_drop_zone_and_a_local_staging_folder(
    tmp_path: Path,
) -> None:
    root = _params_with(tmp_path, incoming_dir="s3://bucket/drop", s3_endpoint_url="http://h:1")
    ingest = load_params(root).ingest
    assert ingest.drop_zone_url == "s3://bucket/drop"
    assert ingest.s3_endpoint_url == "http://h:1"
    assert ingest.incoming_dir == Path(os.path.realpath(tmp_path)) / "data" / "incoming"


def test_a_local_incoming_dir_has_no_drop_zone(tmp_path: Path) -> None:
    ingest = load_params(_params_with(tmp_path)).ingest
    assert ingest.drop_zone_url == ""
    assert ingest.incoming_dir.name == "incoming"


def _answers(*errors: ClientError | None) -> Callable[[], str]:
    """A stand-in for one S3 request that fails with `errors` in turn, then succeeds."""
    pending = list(errors)

    def call() -> str:
        error = pending.pop(0) if pending else None
        if error is not None:
            raise error
        return "done"

    return call


def test_a_409_is_retried_until_the_request_goes_through() -> None:
    conflict = _client_error(409, "ConditionalRequestConflict")
    assert retried(_answers(conflict, conflict), "claim", "s3://b/p", pause=0) == "done"


def test_a_409_that_never_clears_is_a_drop_zone_error() -> None:
    conflict = _client_error(409, "ConditionalRequestConflict")
    with pytest.raises(DropZoneError, match="after 3 attempts"):
        retried(_answers(*[conflict] * 3), "claim", "s3://b/p", attempts=3, pause=0)


def test_a_412_is_not_retried_the_claimant_lost() -> None:
    lost = _client_error(412, "PreconditionFailed")
    with pytest.raises(S3Answer) as caught:
        retried(_answers(lost), "claim", "s3://b/p", pause=0)
    assert caught.value.outcome == "lost"
