"""The two paths of the flow, each declared once as an ordered list of steps.

In: nothing. Out: `BATCH_FLOW` (a delivered batch into the master) and `TRAINING_FLOW` (a retrain
decision into a registered model). Each step names the function that does its work, whether it
acts on the claimed batch (then it first proves the run still owns the `_PROCESSING` lock and
renews it), and whether it takes the workspace pool slot. The CLI runs a whole list in one
process (`runner.run_flow`); `data_pipeline_dag` and `train_pipeline_dag` make one task per step,
or one task for the whole list in single-task mode. DAG files import this at parse time, so it
imports nothing heavy: the work is resolved by name when a step runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

StepState = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One step of a path: its name (the Airflow task id) and where its work lives."""

    name: str
    work: str  # "module:function"; the function takes (FlowRun, StepState)
    holds_lock: bool = False  # acts on the claimed batch: prove and renew the lock first
    pooled: bool = False  # runs DVC or git in the workspace: one at a time per workspace
    may_stop: bool = False  # may end the path early (nothing to do); Airflow skips the rest

    def function(self) -> Callable[..., StepState | None]:
        module, _, name = self.work.partition(":")
        work: Callable[..., StepState | None] = getattr(importlib.import_module(module), name)
        return work


@dataclass(frozen=True)
class Flow:
    """An ordered list of steps, and the task id it runs under in single-task mode."""

    name: str
    steps: tuple[Step, ...]

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"the {self.name} path has no step '{name}'")

    @property
    def pooled(self) -> bool:
        return any(step.pooled for step in self.steps)


_BATCH = "mainstem.flow.batch"
_TRAIN = "mainstem.flow.train"

BATCH_FLOW = Flow(
    "process_batch",
    (
        Step("claim", f"{_BATCH}:claim", may_stop=True),
        Step("repro", f"{_BATCH}:repro", holds_lock=True, pooled=True),
        Step("push", f"{_BATCH}:push", holds_lock=True, pooled=True),
        Step("record_lineage", f"{_BATCH}:record_lineage", holds_lock=True, pooled=True),
        Step("publish", f"{_BATCH}:publish", holds_lock=True),
        Step("release", f"{_BATCH}:release", holds_lock=True),
    ),
)

TRAINING_FLOW = Flow(
    "train_model",
    (
        Step("train", f"{_TRAIN}:train", pooled=True),
        Step("push", f"{_TRAIN}:push", pooled=True),
        Step("record_lineage", f"{_TRAIN}:record_lineage", pooled=True),
    ),
)
