"""Pinning drift's reference before a batch runs: the production model, and the master it saw.

In: a workspace's params and its MLflow store, read without creating anything (as the retrain
dry run reads it). Out: the pin file `validate.drift_reference`, which the validate stage depends
on: the production model's name, version and run, and the DVC hash of the master its run recorded
(`master_md5`), or `{}` while there is no production model. The file is rewritten only when the
pin changes, so DVC re-runs the stage exactly when the reference moves. A store that cannot be
read keeps the last pin: drift then compares with the model known last, and the log says so.
"""

from __future__ import annotations

import logging

from mainstem.durable import read_json_object, write_json
from mainstem.errors import PolicyError, RegistryError
from mainstem.params import Params
from mainstem.training.dry_run import read_store
from mainstem.training.policy import StoreFacts, running_cutoff_ms, workspace_scope
from mainstem.training.registry import tracking_uri
from mainstem.validation.drift_pin import Pin

log = logging.getLogger(__name__)


def pin_of(facts: StoreFacts) -> Pin | None:
    """The production model's pin; None without production, or when its run names no master."""
    production = facts.production
    if production is None or not production.master_md5:
        return None
    return Pin(production.model_name, production.version, production.run_id, production.master_md5)


def pin_reference(params: Params) -> Pin | None:
    """Write the pin of the model in production now (if it changed); the pin now in force."""
    path = params.validate.drift_reference
    try:
        facts = read_store(tracking_uri(params), workspace_scope(params), running_cutoff_ms(params))
    except (RegistryError, PolicyError) as exc:
        log.warning("drift reference left as it was: the MLflow store could not be read: %s", exc)
        return None
    pin = pin_of(facts)
    if facts.production is not None and pin is None:
        log.warning(
            "production %s version %s has no master_md5 tag on its run: drift has no reference",
            facts.production.model_name,
            facts.production.version,
        )
    value = pin.to_json() if pin else {}
    if read_json_object(path) != value:
        write_json(path, value)
    return pin
