"""What follows a run of waiting batches, and the bound on batches per run."""

from __future__ import annotations

import pytest

from mainstem.errors import ParamsError
from mainstem.flow.waiting_batches import BATCHES_PER_RUN_ENV, RunOfBatches, batches_per_run


def _decision(retrain: bool) -> dict[str, object]:
    return {"retrain": retrain, "reason": "r"}


def test_no_policy_run_after_a_decision_not_to_retrain() -> None:
    done = RunOfBatches([{"name": "a"}], decision=_decision(False))
    assert not done.policy_needed
    assert done.to_json()["names"] == ["a"]


def test_the_policy_runs_after_a_decision_to_retrain() -> None:
    assert RunOfBatches([{"name": "a"}], decision=_decision(True)).policy_needed


def test_the_policy_runs_when_the_decision_could_not_be_made() -> None:
    assert RunOfBatches([{"name": "a"}], decision_error="MlflowException: down").policy_needed


def test_batches_per_run_defaults_to_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BATCHES_PER_RUN_ENV, raising=False)
    assert batches_per_run() == 10


def test_batches_per_run_is_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BATCHES_PER_RUN_ENV, "0")
    assert batches_per_run() == 1


def test_a_bound_that_is_not_a_number_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BATCHES_PER_RUN_ENV, "ten")
    with pytest.raises(ParamsError, match=BATCHES_PER_RUN_ENV):
        batches_per_run()
