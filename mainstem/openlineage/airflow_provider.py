"""The Airflow side of a workspace's lineage: the provider's settings, and each task's run.

In: a workspace (its `openlineage:` settings), or an Airflow task instance. Out: the environment
that turns on `apache-airflow-providers-openlineage` with its events in the workspace's events
folder (`airflow/` under it, one file per run, as the stages' are), under the stages' namespace;
and, inside a task, `OPENLINEAGE_PARENT_ID` / `OPENLINEAGE_ROOT_PARENT_ID` computed by the
provider's own macros, so the events of the stages a task runs nest under that task's run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mainstem.commands import environment
from mainstem.openlineage.settings import PARENT_ENV, ROOT_PARENT_ENV, load_settings

TRANSPORT_CLASS = "mainstem.openlineage.transport.RunFileTransport"


def provider_env(workspace: Path) -> dict[str, str]:
    """Airflow configuration for the provider; empty when the workspace's events are off."""
    settings = load_settings(workspace)
    if not settings.enabled:
        return {"AIRFLOW__OPENLINEAGE__DISABLED": "True"}
    transport = {"type": TRANSPORT_CLASS, "directory": str(settings.airflow_events_dir)}
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": settings.namespace,
    }


def task_parent_env(task_instance: Any) -> dict[str, str]:
    """The task's OpenLineage run, as the provider names it; empty when the provider is off."""
    try:
        from airflow.providers.openlineage import conf
        from airflow.providers.openlineage.plugins import macros
    except ImportError:
        return {}
    if conf.is_disabled():
        return {}
    return {
        PARENT_ENV: macros.lineage_parent_id(task_instance),
        ROOT_PARENT_ENV: macros.lineage_root_parent_id(task_instance),
    }


@contextlib.contextmanager
def stage_parent(task_instance: Any) -> Iterator[dict[str, str]]:
    """Within the block, the task's run is the parent of every stage run it starts."""
    env = task_parent_env(task_instance)
    with environment(env):
        yield env
