"""The retrain policy's last decision, kept in the workspace so `mainstem status` can show it.

In: a decision as JSON (`RetrainDecision.to_json()`), who made it and when. Out: the file named by
`retrain.decision_file` (git-ignored: it is operational state, not lineage), replaced atomically
at each decision; and reading it back. When no decision was recorded yet, the decision inside the
last train request (git-tracked, committed with the training) is the best that can be shown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mainstem.durable import read_json, write_json
from mainstem.params import Params


def record_decision(
    params: Params, decision: dict[str, Any], decided_by: str, decided_at: str | None = None
) -> dict[str, Any]:
    """Keep `decision` as the workspace's last one; the record written."""
    record = {
        "decided_at": decided_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "decided_by": decided_by,
        "decision": decision,
    }
    write_json(params.retrain_decision_file, record)
    return record


def last_decision(params: Params) -> dict[str, Any] | None:
    """The last recorded decision, else the one behind the last train request; None if neither."""
    for path, source in (
        (params.retrain_decision_file, "recorded"),
        (params.train.request_file, "train request"),
    ):
        try:
            found = read_json(path)
        except (FileNotFoundError, ValueError):
            continue
        if not isinstance(found, dict) or not isinstance(found.get("decision"), dict):
            continue
        if not found["decision"]:
            continue
        if source == "train request":
            found = {
                "decided_at": found.get("requested_at"),
                "decided_by": found.get("requested_by"),
                "decision": found["decision"],
            }
        return {**found, "source": f"{source} ({path.relative_to(params.root)})"}
    return None
