"""What a workspace is doing now, for `mainstem status` and `mainstem report`.

In: a workspace's params, the clock, and the Airflow Variables with the Airflow they were read
from (or why it could not be reached). Out: a JSON-able dict: which Airflow was asked; the drop
folder's contents, who holds its lock since when and from when another run may take it over; the
last batches with their outcome (raw snapshots and validation reports, plus deliveries refused at
the drop folder, which only quarantine knows); `master_rows` as DVC reports it; the retrain
threshold in force and where it comes from; the policy's last decision. `describe` renders it as
lines. Reading never changes anything, and never loads pandas: the reports are read as plain JSON.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mainstem.durable import read_json_object
from mainstem.errors import MainstemError
from mainstem.flow.gc import dropped_by, last_gc
from mainstem.flow.report_pages import copy_report_page
from mainstem.intake import lock
from mainstem.intake.delivery import MANIFEST, READY, scan
from mainstem.intake.dropfolder import takeover_time
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.queue import describe_queue, queue_summary, ready_entries
from mainstem.intake.raw_store import RawRecord, record_of
from mainstem.master.batch_log import read_summary
from mainstem.master.batch_log import recent_batches as recent_log
from mainstem.names import ROWS_VARIABLE, THRESHOLD_VARIABLE
from mainstem.params import Params
from mainstem.training.decision_log import last_decision
from mainstem.validation.layout import REPORT, REPORT_HTML, read_report, result_file
from mainstem.validation.layout import record_of as record_of_validated

MASTER_MANIFEST = "_manifest.json"  # master.MANIFEST; importing that module loads pyarrow
_LISTED = 10


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def incoming_status(params: Params, now: float) -> dict[str, Any]:
    """The drop folder: what waits there, and the lock with its holder."""
    incoming = params.ingest.incoming_dir
    if not incoming.is_dir():
        return {
            "path": str(incoming),
            "exists": False,
            "files": 0,
            "lock": None,
            "queue": queue_summary([], now),
        }
    found, problems = scan(incoming)
    holder = lock.read_owner(incoming)
    held = None
    if holder is not None:
        stale_after = params.ingest.stale_lock_seconds
        grace = params.ingest.dead_owner_grace_seconds
        state = lock.state_of(holder, "", now, stale_after, grace)
        held = {
            "run_id": holder.run_id,
            "host": holder.host,
            "pid": holder.pid,
            "batch_id": holder.batch_id,
            "entry": holder.entry,
            "claimed_at": _when(holder.claimed_at),
            "heartbeat_at": _when(holder.heartbeat_at),
            "seconds_since_heartbeat": round(now - holder.heartbeat_at),
            "owner_alive": lock.owner_alive(holder),
            "given_up": holder.given_up,
            "state": state,
            "takeover": takeover_time(params.ingest, holder) if state == "live" else None,
        }
    return {
        "path": str(incoming),
        "exists": True,
        "ready": (incoming / READY).exists(),
        "manifest": (incoming / MANIFEST).exists(),
        "files": len(found),
        "bytes": sum(info.st_size for _rel, info in found),
        "first_files": [rel for rel, _info in found[:_LISTED]],
        "problems": [p.describe() for p in problems[:_LISTED]],
        "lock": held,
        "queue": queue_summary(ready_entries(incoming), now),
    }


def _listed_batches(params: Params, limit: int) -> list[RawRecord]:
    """The raw index records status lists: the last `limit` the master's log records plus the batch
    claimed now, when the log can be read; else the raw index's newest records (a master not
    pulled, or one written before the log). Reading the log's tail keeps status as fast after
    100,000 batches as after 10: every ingested batch is merged (as applied or rejected) before
    its claim is released, so only the claimed batch can be ingested and not in the log."""
    raw_dir, master_dir = params.ingest.raw_dir, params.merge.master_dir
    summary = read_summary(read_json_object(master_dir / MASTER_MANIFEST) or {})
    if summary is None:
        return list_raw_batches(raw_dir, last=limit + 1)
    try:
        logged = [b.batch_id for b in recent_log(master_dir, summary, limit)]
    except (OSError, ValueError, TypeError):
        return list_raw_batches(raw_dir, last=limit + 1)
    claimed = str((read_json_object(params.ingest.claimed_batch) or {}).get("batch_id") or "")
    ids = [*logged, *([claimed] if claimed and claimed not in logged else [])]
    found = [record for i in ids if (record := record_of(raw_dir, i)) is not None]
    return sorted(found, key=lambda raw: raw.sequence)


def _merged_through(manifest: dict[str, Any]) -> int:
    """The sequence of the last batch the master applied (0 for none)."""
    summary = read_summary(manifest)
    if summary is not None:
        return summary.last.sequence if summary.last else 0
    listed = manifest.get("batches")  # a manifest written before the log listed every batch
    if isinstance(listed, list):
        return max((int(b.get("sequence") or 0) for b in listed if isinstance(b, dict)), default=0)
    return 0


def _refused(params: Params, limit: int) -> list[tuple[float, Path]]:
    """The last `limit` deliveries refused at the drop folder (never ingested), by the time of
    their report: one stat each, and only the reports listed are read."""
    quarantine, raw_dir = params.ingest.quarantine_dir, params.ingest.raw_dir
    if not quarantine.is_dir():
        return []
    found = []
    for folder in quarantine.iterdir():
        if record_of(raw_dir, folder.name) is not None:
            continue
        with contextlib.suppress(OSError):
            found.append(((folder / REPORT).stat().st_mtime, folder))
    return sorted(found)[-limit:]


def _report_page(validated: Path, batch_id: str, root: Path) -> str | None:
    """Where the batch's HTML report is kept (`mainstem report` copies it out for a browser)."""
    record = record_of_validated(validated, batch_id)
    if record is None:
        return None
    try:
        return str(result_file(validated, record, REPORT_HTML, root))
    except MainstemError:
        return None


def recent_batches(params: Params, limit: int = _LISTED) -> list[dict[str, Any]]:
    """The last `limit` batches, oldest first: ingested ones in sequence, then drop-folder refusals.

    A delivery refused at the drop folder never gets a sequence number; it is placed after the
    ingested batches by the time its quarantine report was written.
    """
    validated = params.validate.validated_dir
    quarantine = params.ingest.quarantine_dir
    manifest = read_json_object(params.merge.master_dir / MASTER_MANIFEST) or {}
    merged_through = _merged_through(manifest)
    batches: list[tuple[float, dict[str, Any]]] = []
    ingested = set()
    for raw in _listed_batches(params, limit):
        ingested.add(raw.batch_id)
        report = read_report(validated, raw.batch_id, params.root)
        entry: dict[str, Any] = {
            "batch_id": raw.batch_id,
            "sequence": raw.sequence,
            "name": raw.name,
            "outcome": "ingested, not validated yet",
        }
        if report is not None:
            entry.update(
                outcome=str(report["status"]),
                rows_in=report["rows_in"],
                rows_accepted=report["rows_accepted"],
                rows_rejected=report["rows_rejected"],
                reasons=list(report["reasons"])[:3],
                contract=report["contract"],
                merged=raw.sequence <= merged_through,
            )
            entry["report"] = _report_page(validated, raw.batch_id, params.root)
        if (quarantine / raw.batch_id).is_dir():
            # a delivery the contract in force accepts is not quarantined, even if an earlier
            # contract rejected an earlier delivery of the same content
            rejected_now = report is None or report["status"] == "rejected"
            key = "quarantine" if rejected_now else "quarantined_before"
            entry[key] = str(quarantine / raw.batch_id)
        dropped = dropped_by(params.root, params.ingest.raw_dir, raw.batch_id)
        if dropped is not None:
            entry["raw_dropped"] = dropped
        batches.append((float(raw.sequence), entry))
    for stamp, folder in _refused(params, limit):
        report = read_json_object(folder / REPORT)
        if folder.name in ingested or report is None:
            continue
        entry = {
            "batch_id": folder.name,
            "sequence": None,
            "name": None,
            "outcome": f"refused at the {report.get('stage', 'claim')}",
            "reasons": [str(r) for r in report.get("reasons", [])][:3],
            "quarantine": str(folder),
            "refused_at": _when(stamp),
        }
        batches.append((1e12 + stamp, entry))
    batches.sort(key=lambda item: item[0])
    return [entry for _key, entry in batches[-limit:]]


def master_rows(params: Params) -> dict[str, Any]:
    """`master_rows` read through DVC from the merge metrics file, or why it cannot be."""
    from mainstem.metrics import read_metric

    file = params.merge.metrics_file.relative_to(params.root).as_posix()
    try:
        return {"rows": int(read_metric(params.root, file, "master_rows")), "source": file}
    except MainstemError as exc:
        return {"rows": None, "source": file, "error": str(exc)}


def threshold(
    params: Params, variables: dict[str, str | None] | None, airflow: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The threshold in force: the Airflow Variable when set, else the params.yaml default.

    `airflow` says which Airflow was asked (`where`) and, when it could not be read, why
    (`error`); the default then says that the value the DAGs use is unknown.
    """
    raw = (variables or {}).get(THRESHOLD_VARIABLE)
    where = f", from {airflow['where']}" if airflow else ""
    if raw is not None:
        return {"value": raw, "source": f"Airflow Variable {THRESHOLD_VARIABLE}{where}"}
    source = "params.yaml retrain.threshold_rows"
    if variables is not None:
        source += f" (Airflow Variable {THRESHOLD_VARIABLE} is not set{where})"
    elif airflow and airflow.get("error"):
        source += f" ({airflow['where']} {airflow['error']}; the value the DAGs use is unknown)"
    return {"value": params.retrain_threshold_rows, "source": source}


def workspace_status(
    params: Params,
    now: float,
    variables: dict[str, str | None] | None = None,
    airflow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything `mainstem status` shows; `variables` is None when Airflow is not consulted
    or could not be read, and `airflow` says which Airflow was asked and why it failed."""
    rows = master_rows(params)
    if variables is not None:
        rows["airflow_variable"] = variables.get(ROWS_VARIABLE)
    return {
        "workspace": str(params.root),
        "airflow": airflow,
        "incoming": incoming_status(params, now),
        "drop_zone": _drop_zone(params, now),
        "batches": recent_batches(params),
        "master_rows": rows,
        "retrain_threshold_rows": threshold(params, variables, airflow),
        "last_decision": last_decision(params),
        "retention": last_gc(params.root, params.ingest.raw_dir),
    }


def _drop_zone(params: Params, now: float) -> dict[str, Any] | None:
    """The S3 drop zone's queue, when `incoming_dir` is on S3 (`incoming` is then staging)."""
    if not params.ingest.drop_zone_url:
        return None
    from mainstem.intake.s3_queue import s3_queue_status  # boto3 only for an S3 drop zone

    return s3_queue_status(params.ingest, now)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _incoming_lines(incoming: dict[str, Any]) -> list[str]:
    if not incoming["exists"]:
        return [f"incoming: {incoming['path']} does not exist yet"]
    markers = [name for name, key in ((READY, "ready"), (MANIFEST, "manifest")) if incoming[key]]
    lines = [
        f"incoming: {incoming['path']}: {incoming['files']} file(s), {_size(incoming['bytes'])}"
        + (f"; {', '.join(markers)} present" if markers else "")
    ]
    lines += [f"  - {name}" for name in incoming["first_files"]]
    if incoming["files"] > len(incoming["first_files"]):
        lines.append(f"  ... and {incoming['files'] - len(incoming['first_files'])} more")
    lines += [f"  ! {problem}" for problem in incoming["problems"]]
    lines.append(describe_queue(incoming["queue"]))
    held = incoming["lock"]
    if held is None:
        lines.append("lock: free")
    else:
        alive = {True: "alive", False: "gone", None: "on another host"}[held["owner_alive"]]
        lines.append(
            f"lock: held by run {held['run_id']} (host {held['host']}, pid {held['pid']}, "
            f"{alive}) since {held['claimed_at']}, for batch {held['batch_id']}; last heartbeat "
            f"{held['seconds_since_heartbeat']} s ago: {held['state']}"
        )
        lines.append(f"  {_takeover_line(held)}")
    return lines


def _takeover_line(held: dict[str, Any]) -> str:
    if held["given_up"]:
        return "the run stopped on an error; the next `mainstem process` resumes the batch"
    if held["state"] == "stale":
        return "its holder is gone (or silent too long); the next `mainstem process` takes it over"
    return f"another run may take it over from {held['takeover']}"


def _airflow_lines(airflow: dict[str, Any] | None) -> list[str]:
    if not airflow:
        return []
    if airflow.get("error"):
        return [f"airflow: {airflow['where']} {airflow['error']}"]
    return [f"airflow: {airflow['where']}"]


def _batch_line(batch: dict[str, Any]) -> list[str]:
    label = f"#{batch['sequence']}" if batch["sequence"] is not None else "--"
    name = f" ({batch['name']})" if batch.get("name") else ""
    line = f"  {label:>4} {batch['batch_id']}{name}: {batch['outcome']}"
    if "rows_in" in batch:
        line += (
            f", {batch['rows_accepted']} of {batch['rows_in']} rows accepted, "
            f"{batch['rows_rejected']} rejected"
            + ("" if batch["merged"] else "; not in the master yet")
        )
    lines = [line]
    lines += [f"         - {reason}" for reason in batch.get("reasons", [])]
    if batch.get("report"):
        lines.append(f"         report: {batch['report']}")
    if batch.get("quarantine"):
        lines.append(f"         quarantined in {batch['quarantine']}")
    if batch.get("raw_dropped"):
        dropped = batch["raw_dropped"]
        lines.append(
            f"         raw pack dropped by retention on {dropped['dropped_at']} (gc commit "
            f"{str(dropped['gc_commit'])[:12]}); its results and the master stay"
        )
    if batch.get("quarantined_before"):
        lines.append(
            f"         accepted now; an earlier delivery was rejected by the contract then in "
            f"force ({batch['quarantined_before']})"
        )
    return lines


def describe(status: dict[str, Any]) -> list[str]:
    """The status as lines a person reads."""
    lines = [f"workspace: {status['workspace']}", *_airflow_lines(status.get("airflow"))]
    if status.get("drop_zone"):
        from mainstem.intake.s3_queue import describe_zone

        lines += describe_zone(status["drop_zone"])
    lines += _incoming_lines(status["incoming"])
    batches = status["batches"]
    lines.append(f"last batches ({len(batches)}):" if batches else "last batches: none yet")
    for batch in batches:
        lines += _batch_line(batch)
    rows = status["master_rows"]
    if rows["rows"] is None:
        lines.append(f"master_rows: unknown ({rows['error']})")
    else:
        lines.append(f"master_rows: {rows['rows']} (DVC metrics {rows['source']})")
    if "airflow_variable" in rows and str(rows["airflow_variable"]) != str(rows["rows"]):
        lines.append(f"  Airflow Variable {ROWS_VARIABLE} = {rows['airflow_variable']}")
    limit = status["retrain_threshold_rows"]
    lines.append(f"{THRESHOLD_VARIABLE}: {limit['value']} ({limit['source']})")
    if status.get("retention"):
        gc = status["retention"]
        lines.append(f"retention: last gc {gc['commit'][:12]} on {gc['date']}: {gc['title']}")
    last = status["last_decision"]
    if last is None:
        lines.append("last retrain decision: none recorded yet")
    else:
        decision = last["decision"]
        verdict = "RETRAIN" if decision.get("retrain") else "no retrain"
        lines.append(
            f"last retrain decision: {verdict} - {decision.get('reason')} "
            f"({last.get('decided_at')}, by {last.get('decided_by')}; {last['source']})"
        )
    return lines


def find_report(params: Params, batch: str) -> Path:
    """The HTML report of the batch whose id starts with `batch`, or delivered as `batch`."""
    if not batch:
        raise MainstemError("give a batch id (or its first characters) or the batch's name")
    batches = list_raw_batches(params.ingest.raw_dir)
    matches = sorted(
        {b.batch_id for b in batches if b.batch_id.startswith(batch) or b.name == batch}
    )
    if not matches:
        # A re-delivery of ingested content keeps the first name in data/raw; its own name is
        # in the lineage commit that recorded it.
        from mainstem.flow.lineage import batches_named

        matches = batches_named(params.root, batch)
    if len(matches) > 1:
        raise MainstemError(
            f"'{batch}' matches {len(matches)} batches ({', '.join(matches[:5])}); "
            "give more characters of the id"
        )
    if not matches:
        refused = params.ingest.quarantine_dir
        quarantined = (
            sorted(p.name for p in refused.iterdir() if p.name.startswith(batch))
            if refused.is_dir()
            else []
        )
        if quarantined:
            raise MainstemError(
                f"batch {quarantined[0]} was refused at the drop folder, before validation, so it "
                f"has no HTML report; see {refused / quarantined[0] / REPORT}"
            )
        raise MainstemError(f"no batch id starts with '{batch}' and no batch is named '{batch}'")
    page = copy_report_page(params, matches[0])
    if page is None:
        raise MainstemError(
            f"batch {matches[0]} has no HTML report yet (it is not validated); run `dvc repro "
            "validate` (or `dvc pull`) in the workspace"
        )
    return page


def can_open_browser() -> bool:
    """Whether a browser window can be shown here: a display, or a desktop that opens files."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or (
        os.uname().sysname == "Darwin"
    )
