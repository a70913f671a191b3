"""Talking to the S3 drop zone: one client, and S3's answers turned into what they mean here.

In: an endpoint URL (or none: boto3 then reads `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, the
region and the credentials from the usual AWS environment variables and files). Out: a boto3 S3
client, and for every failed request either an outcome the protocol acts on (`lost`: a condition
failed; `retry`: a conflicting request was in flight; `missing`: no such key) or a one-line
DropZoneError saying what to fix (endpoint unreachable, bucket missing, access denied).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from mainstem.errors import (
    DropZoneAccessDeniedError,
    DropZoneBucketMissingError,
    DropZoneError,
    DropZoneUnreachableError,
)

Outcome = Literal["lost", "retry", "missing", "no-bucket", "denied", "other"]
T = TypeVar("T")
ATTEMPTS = 5
_DENIED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)
_TRANSIENT = frozenset(
    {"ConditionalRequestConflict", "OperationAborted", "SlowDown", "InternalError"}
)


def outcome_of(status: int, code: str) -> Outcome:
    """What an S3 error answer means for the protocol, from its HTTP status and error code."""
    if code == "NoSuchBucket":
        return "no-bucket"
    if status == 412 or code == "PreconditionFailed":
        return "lost"
    if status == 409 or status >= 500 or code in _TRANSIENT:
        return "retry"
    if status == 403 or code in _DENIED:
        return "denied"
    if status == 404 or code in ("NoSuchKey", "NotFound"):
        return "missing"
    return "other"


def client(endpoint_url: str = "") -> Any:
    """A boto3 S3 client for the drop zone; `endpoint_url` wins over the environment's."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
    # A session of its own reads the environment now, not as the first client of the process did.
    session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


class S3Answer(Exception):
    """An S3 error the protocol handles itself (`lost`, `retry`, `missing`); never escapes."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


@contextmanager
def drop_zone_errors(what: str, url: str) -> Iterator[None]:
    """Turn botocore failures inside the block into S3Answer or a one-line DropZoneError."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        code = str(error.get("Code", ""))
        outcome = outcome_of(status, code)
        if outcome == "no-bucket":
            raise DropZoneBucketMissingError(
                f"{what}: the bucket of {url} does not exist; create it or fix ingest.incoming_dir"
            ) from exc
        if outcome == "denied":
            raise DropZoneAccessDeniedError(
                f"{what}: access to {url} denied ({code}); check the AWS credentials and the "
                "bucket's policy"
            ) from exc
        if outcome == "other":
            raise DropZoneError(f"{what}: {url} answered {status} {code}") from exc
        raise S3Answer(outcome, f"{status} {code}") from exc
    except NoCredentialsError as exc:
        raise DropZoneAccessDeniedError(
            f"{what}: no AWS credentials for {url}; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or a profile)"
        ) from exc
    except EndpointConnectionError as exc:
        raise DropZoneUnreachableError(
            f"{what}: the S3 endpoint of {url} is unreachable ({exc.kwargs.get('endpoint_url')}); "
            "start it or fix ingest.s3_endpoint_url / AWS_ENDPOINT_URL"
        ) from exc
    except BotoCoreError as exc:
        raise DropZoneUnreachableError(f"{what}: no usable answer from {url}: {exc}") from exc


def retried(
    call: Callable[[], T], what: str, url: str, attempts: int = ATTEMPTS, pause: float = 0.2
) -> T:
    """`call` under `drop_zone_errors`, repeated while S3 answers `retry` (409, 5xx)."""
    for attempt in range(1, attempts):
        try:
            with drop_zone_errors(what, url):
                return call()
        except S3Answer as answer:
            if answer.outcome != "retry":
                raise
        time.sleep(pause * attempt)
    try:
        with drop_zone_errors(what, url):
            return call()
    except S3Answer as answer:
        if answer.outcome == "retry":
            raise DropZoneError(
                f"{what}: {url} kept answering {answer} after {attempts} attempts"
            ) from answer
        raise
