"""The retrain policy as a step of the flow: decide from the Variables' values, log, record.

In: the workspace and the raw values of `CURRENT_MASTER_ROWS` and `RETRAIN_THRESHOLD_ROWS` (text,
or None when unset), and whether a training is already queued or running. Out: the decision as
JSON, which `retrain_policy_dag` returns and passes to `train_pipeline_dag` as conf (and which
`data_pipeline_dag` makes after each batch, in the same task); its chain is logged line by line and
recorded for `mainstem status`, with who decided.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mainstem.names import POLICY_DAG
from mainstem.params import load_params

log = logging.getLogger(__name__)


def decide_retrain(
    root: Path,
    rows_raw: str | None,
    threshold_raw: str | None,
    training_in_flight: bool,
    decided_by: str = POLICY_DAG,
) -> dict[str, Any]:
    """The retrain decision from the Variables' raw values; logged line by line, recorded as
    made by `decided_by`; as JSON."""
    from mainstem.training.decision_log import record_decision
    from mainstem.training.policy import PolicyInputs, decide, explain

    params = load_params(root)
    # an unset CURRENT_MASTER_ROWS is an error here, never "count the master some other way"
    given = PolicyInputs(rows_raw, threshold=threshold_raw, training_in_flight=training_in_flight)
    decision = decide(params, given)
    for line in explain(decision):
        log.info("%s", line)
    log.info("decision: %s (%s)", "RETRAIN" if decision.retrain else "no retrain", decision.reason)
    record_decision(params, decision.to_json(), decided_by)
    return decision.to_json()
