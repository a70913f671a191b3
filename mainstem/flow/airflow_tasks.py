"""Airflow tasks made from a declared path: one task per step, or one task for the whole path.

In: a Flow from `sequences` and the workspace. Out: the chained TaskFlow tasks, first and last,
for a DAG file to wire. Each task runs its step (or, in single-task mode, every step) through
`runner.run_step`, so the CLI and Airflow execute the same list with the same lock checks.
Single-task mode is for executors whose tasks share no disk (Celery workers, Kubernetes pods):
set `MAINSTEM_SINGLE_TASK=1` where the DAGs are parsed. The batch path is one task by default
(`airflow_batches`, which also decides and takes several waiting batches); `MAINSTEM_SINGLE_TASK=0`
gives it a task per step. The state between tasks travels as XCom
(small JSON dicts); the first task starts from the run's `conf` and who the run is.

A batch refused by the contract or at the drop folder, and a training without a decision, fail
the task at once (no retry can help); any other error fails it and Airflow retries it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import task

from mainstem.flow.sequences import Flow, Step
from mainstem.names import ROWS_VARIABLE, WORKSPACE_POOL

SINGLE_TASK_ENV = "MAINSTEM_SINGLE_TASK"


def single_task_mode(default: bool = False) -> bool:
    """Whether `MAINSTEM_SINGLE_TASK` asks for each path as one task; `default` when it is unset.

    The batch path defaults to one task (`airflow_batches`); `MAINSTEM_SINGLE_TASK=0` asks for a
    task per step there.
    """
    raw = os.environ.get(SINGLE_TASK_ENV, "").strip().lower()
    return raw in {"1", "true", "yes"} if raw else default


def _run_steps(flow: Flow, names: tuple[str, ...], workspace: Path, state: Any) -> Any:
    """The body of a task: its steps, in order, as this Airflow run."""
    from airflow.sdk import Variable, get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from mainstem.errors import BatchRejectedError, MissingDecisionError
    from mainstem.flow.runner import FlowRun, run_step
    from mainstem.openlineage.airflow_provider import stage_parent

    context = get_current_context()
    owner_id = f"{context['dag'].dag_id}/{context['run_id']}"
    run = FlowRun(workspace, owner_id, lambda rows: Variable.set(ROWS_VARIABLE, str(rows)))
    if state is None:
        state = {"requested_by": owner_id, **(context["dag_run"].conf or {})}
    try:
        with stage_parent(context["ti"]):
            for name in names:
                state = run_step(flow, name, run, state)
                if state is None:
                    return None
    except (BatchRejectedError, MissingDecisionError) as exc:
        raise AirflowFailException(str(exc)) from exc
    return state


def _task_for(flow: Flow, steps: tuple[Step, ...], task_id: str, workspace: Path) -> Any:
    names = tuple(step.name for step in steps)
    options: dict[str, Any] = {"task_id": task_id}
    if any(step.pooled for step in steps):
        options["pool"] = WORKSPACE_POOL
    decorator = task.short_circuit if any(step.may_stop for step in steps) else task

    @decorator(**options)
    def run_steps(state: Any = None) -> Any:
        return _run_steps(flow, names, workspace, state)

    return run_steps


def path_tasks(flow: Flow, workspace: Path, single_task: bool | None = None) -> tuple[Any, Any]:
    """The tasks of `flow` chained in order, as (first, last); one task in single-task mode."""
    if single_task if single_task is not None else single_task_mode():
        only = _task_for(flow, flow.steps, flow.name, workspace)()
        return only, only
    first = last = None
    for step in flow.steps:
        made = _task_for(flow, (step,), step.name, workspace)
        last = made() if last is None else made(last)
        first = first or last
    return first, last
