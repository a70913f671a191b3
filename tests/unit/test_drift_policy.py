"""The retrain policy's `retrain.drift` option: off by default, and when on, drift retrains too.

A table of pure cases over `make_decision`, the drift facts read from validate metrics, the
decision's explanation, and decisions recorded before drift existed.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from mainstem.params import load_params
from mainstem.training.policy import (
    CompatibleRun,
    Counts,
    DriftFacts,
    RetrainDecision,
    Scope,
    StoreFacts,
    drift_facts,
    explain,
    make_decision,
)
from mainstem.training.registry import Production
from tests.unit.raw_batches import ROOT

SCOPE = Scope("mainstem-produce", "produce-grade", "production")
PRODUCTION = Production(
    "produce-grade", "production", "3", "run-p", "f1", "s1", "m1", {}, "trained.dir"
)
DRIFTED = DriftFacts(True, "drifted", ("weight_g", "image_file:brightness"), "b7", "trained.dir")


def store(trained_md5: str = "trained.dir") -> StoreFacts:
    compatible = CompatibleRun("run-c", 1000, trained_md5)
    return StoreFacts("sqlite:///m.db", SCOPE, PRODUCTION, "filter", compatible, None)


def decide(
    new_rows: int, drift: DriftFacts | None, facts: StoreFacts | None = None
) -> RetrainDecision:
    counts = Counts(1000 + new_rows, "DVC metrics", 400, "params.yaml retrain.threshold_rows")
    return make_decision(counts, facts or store(), False, None, drift)


def test_the_option_is_off_by_default() -> None:
    assert load_params(ROOT).retrain_drift is False


def test_drift_with_the_option_on_retrains_and_says_so() -> None:
    decision = decide(10, DRIFTED)
    assert decision.retrain
    assert decision.basis == "drift"
    assert "weight_g, image_file:brightness" in decision.reason
    assert "retrain.drift is on" in decision.reason


def test_drift_with_the_option_off_does_not_retrain_but_is_named() -> None:
    decision = decide(10, replace(DRIFTED, enabled=False))
    assert not decision.retrain
    assert decision.basis == "growth"
    assert "drifted in weight_g" in decision.reason
    assert "retrain.drift is off" in decision.reason


def test_no_drift_leaves_the_growth_verdict_alone() -> None:
    stable = DriftFacts(True, "stable", (), "b7", "trained.dir")
    assert decide(10, stable) == replace(
        decide(10, None),
        drift_enabled=True,
        drift_status="stable",
        drift_batch_id="b7",
        drift_reference_md5="trained.dir",
    )
    assert not decide(10, stable).retrain


def test_growth_that_retrains_anyway_mentions_the_drift() -> None:
    decision = decide(500, DRIFTED)
    assert decision.retrain
    assert decision.basis == "growth"
    assert decision.reason.endswith("batch b7 also drifted in weight_g, image_file:brightness")


def test_drift_measured_before_a_newer_training_does_not_retrain_again() -> None:
    decision = decide(10, DRIFTED, store(trained_md5="newer.dir"))
    assert not decision.retrain
    assert "trained on a newer master since" in decision.reason


def test_explain_lists_the_drifted_columns() -> None:
    lines = explain(decide(10, DRIFTED))
    drift = next(line for line in lines if line.startswith("drift:"))
    assert drift == (
        "drift: retrain.drift on; last batch b7: drifted columns weight_g, "
        "image_file:brightness (vs master trained.dir)"
    )
    assert lines[-1].startswith("decision: RETRAIN - batch b7 drifted")


def test_explain_says_when_there_was_no_reference() -> None:
    none = DriftFacts(False, "no_reference", (), "b1", None)
    assert "drift: retrain.drift off; last batch b1: no reference" in "\n".join(
        explain(decide(10, none))
    )


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (None, DriftFacts(False, "not_measured", (), None, None)),
        (
            {
                "last_batch_id": "b7",
                "drift": {
                    "status": "drifted",
                    "drifted_columns": "weight_g, grade",
                    "reference_md5": "m.dir",
                },
            },
            DriftFacts(False, "drifted", ("weight_g", "grade"), "b7", "m.dir"),
        ),
    ],
)
def test_drift_facts_come_from_the_validate_metrics(
    metrics: dict[str, object] | None, expected: DriftFacts
) -> None:
    assert drift_facts(metrics, enabled=False) == expected


def test_a_decision_recorded_before_drift_existed_still_reads() -> None:
    recorded = asdict(decide(10, None))
    for name in ("drift_enabled", "drift_status", "drifted_columns", "drift_batch_id"):
        recorded.pop(name)
    recorded.pop("drift_reference_md5")
    assert RetrainDecision.from_json(recorded) == decide(10, None)


def test_a_decision_survives_its_json() -> None:
    decision = decide(10, DRIFTED)
    assert RetrainDecision.from_json(decision.to_json()) == decision


def _native(value: object) -> bool:
    """Only the types JSON has: what Airflow's XCom passes on unchanged."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _native(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_native(item) for item in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_a_decision_as_json_holds_no_tuple_for_xcom_to_wrap() -> None:
    decision = decide(10, DRIFTED)
    assert decision.drifted_columns
    as_json = decision.to_json()
    assert _native(as_json)
    assert as_json["drifted_columns"] == list(decision.drifted_columns)
