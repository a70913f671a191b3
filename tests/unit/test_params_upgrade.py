"""`mainstem upgrade` gives an old workspace the settings its new code needs, and keeps its own."""

from __future__ import annotations

import yaml

from mainstem.flow.params_upgrade import with_new_ignores, with_new_params

OLD = """\
validate:
  dataset: houses                      # chosen by the team
  contract_version: 3
  metrics_file: metrics/validate.json

retrain:
  threshold_rows: 900
"""

SOURCE = """\
validate:
  dataset: produce
  contract_version: 1                  # contracts/<dataset>/v<N>.yaml
  drift_reference: models/drift_reference.json  # the production model's master
  metrics_file: metrics/validate.json

openlineage:                           # events of every stage run
  enabled: true
  events_dir: lineage/openlineage      # git-ignored

retrain:
  threshold_rows: 400
  drift: false                         # drift also triggers a retrain
  features:
    - a
    - b
"""


def test_missing_keys_and_sections_are_added_and_chosen_values_kept() -> None:
    text, added = with_new_params(OLD, SOURCE)
    loaded = yaml.safe_load(text)
    assert added == [
        "validate.drift_reference",
        "openlineage.enabled",
        "openlineage.events_dir",
        "retrain.drift",
        "retrain.features",
    ]
    assert loaded["validate"] == {
        "dataset": "houses",
        "contract_version": 3,
        "metrics_file": "metrics/validate.json",
        "drift_reference": "models/drift_reference.json",
    }
    assert loaded["retrain"] == {"threshold_rows": 900, "drift": False, "features": ["a", "b"]}
    assert loaded["openlineage"] == {"enabled": True, "events_dir": "lineage/openlineage"}
    assert "# chosen by the team" in text
    assert "drift also triggers a retrain" in text
    assert "openlineage:                           # events of every stage run" in text


def test_a_second_upgrade_adds_nothing() -> None:
    once, _ = with_new_params(OLD, SOURCE)
    twice, added = with_new_params(once, SOURCE)
    assert (twice, added) == (once, [])


def test_missing_ignores_are_appended_once() -> None:
    text, added = with_new_ignores("/mlflow/\n", "# local\n/mlflow/\n/lineage/\n")
    assert added == ["/lineage/"]
    assert text.splitlines()[0] == "/mlflow/"
    assert text.rstrip().endswith("/lineage/")
    assert with_new_ignores(text, "/mlflow/\n/lineage/\n") == (text, [])
