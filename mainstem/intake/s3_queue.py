"""The S3 drop zone's queue as `mainstem status` shows it.

In: the ingest params of a workspace whose drop zone is on S3 (`ingest.incoming_dir: s3://...`)
and the clock. Out: the batches waiting there (oldest `_READY` first), the ones under a
`_PROCESSING` lease (being processed, or left by a worker that died) and the ones still arriving
(no `_READY` yet), in the same summary shape as the local queue, plus the zone's URL. The
listing is one paginated `ListObjectsV2`; nothing is written.
"""

from __future__ import annotations

from typing import Any

from mainstem.errors import DropZoneError
from mainstem.intake.queue import QueueEntry, describe_queue, queue_summary
from mainstem.intake.s3_layout import Entry, oldest_first
from mainstem.params import IngestParams


def zone_queue(entries: list[Entry], now: float, shown: int = 10) -> dict[str, Any]:
    """Waiting (ready, no lease), leased and arriving batches of a zone's listing."""
    waiting = [QueueEntry(e.ready_at or 0.0, e.name) for e in oldest_first(entries) if not e.leased]
    return {
        **queue_summary(waiting, now, shown),
        "leased": sorted(e.name for e in entries if e.leased),
        "arriving": sorted(e.name for e in entries if e.ready_at is None and not e.leased),
    }


def s3_queue_status(params: IngestParams, now: float) -> dict[str, Any]:
    """The zone's queue now; an unreachable zone gives its one-line error instead."""
    from mainstem.intake.s3_claim import open_zone
    from mainstem.intake.s3_dropzone import list_entries

    try:
        s3, zone = open_zone(params)
        return {"url": zone.url, "error": None, **zone_queue(list_entries(s3, zone), now)}
    except DropZoneError as exc:
        return {"url": params.drop_zone_url, "error": str(exc)}


def describe_zone(status: dict[str, Any]) -> list[str]:
    """The zone's queue in a few lines."""
    if status["error"]:
        return [f"drop zone: {status['url']}: cannot list it: {status['error']}"]
    lines = [f"drop zone: {status['url']}", f"  {describe_queue(status)}"]
    if status["leased"]:
        lines.append(f"  leased (being processed): {', '.join(status['leased'])}")
    if status["arriving"]:
        lines.append(f"  arriving (no _READY yet): {', '.join(status['arriving'])}")
    return lines
