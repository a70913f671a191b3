"""Switching a lineage's params to an S3 drop zone for stateless workers (`zone_lineage`)."""

from __future__ import annotations

from pathlib import Path

from mainstem.local.zone_lineage import with_params
from mainstem.params import load_params
from tests.conftest import ROOT


def test_with_params_sets_the_ingest_keys_and_keeps_everything_else(tmp_path: Path) -> None:
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    changed = with_params(text, {"incoming_dir": "s3://zone/prefix", "stale_lock_seconds": 20})
    (tmp_path / "params.yaml").write_text(changed, encoding="utf-8")
    assert changed.count("\n") == text.count("\n")
    ingest = load_params(tmp_path).ingest
    assert ingest.drop_zone_url == "s3://zone/prefix"
    assert ingest.stale_lock_seconds == 20
