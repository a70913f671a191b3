"""`make demo`: the whole flow on embedded sample data, in a workspace of its own.

In: a base folder (default `.demo/` in the source tree, which git ignores). Out: a fresh pipeline
workspace at `<base>/workspace` with a local DVC remote at `<base>/remote`, the sample batches
delivered and processed one at a time, and a printed account of each batch. Then the loop: the
retrain policy's decision chain, a training when it says so (the new MLflow run, and where the
production alias points), and a second pass of batches where the policy says "no" below the
threshold and "yes" once it is crossed; last, the path of the pipeline page. Every run starts over
from an empty base folder, so left-overs of an earlier run never get in the way: an Airflow that an
interrupted demo left running is stopped first. A folder some other live process uses (`make
airflow`, `make stack`, a shell in the workspace) is never deleted; the demo says which process to
stop, and stops.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, TextIO

from mainstem.commands import git
from mainstem.durable import read_json
from mainstem.errors import MainstemError
from mainstem.flow.batch import BatchRun, process_next_batch
from mainstem.flow.pipeline_history import refresh_pipeline_page
from mainstem.flow.train import train_from_decision
from mainstem.flow.workspace import create_workspace, source_root
from mainstem.intake.submit import submit
from mainstem.local.airflow_launcher import AirflowStack, BatchRuns, stop_orphans
from mainstem.local.batch_summary import describe, describe_duplicate, describe_report
from mainstem.local.occupancy import processes_using
from mainstem.local.samples import BatchSpec, demo_batches, make_batch, second_pass_batches
from mainstem.local.services import free_port
from mainstem.names import DATA_DAG
from mainstem.params import load_params
from mainstem.training.decision_log import record_decision
from mainstem.training.policy import RetrainDecision, explain
from mainstem.training.request import TrainingOutcome, workspace_decision
from mainstem.validation.layout import read_report


def default_base() -> Path:
    return source_root() / ".demo"


def deliver_and_process(
    workspace: Path, deliveries: Path, specs: list[BatchSpec], out: TextIO
) -> list[BatchRun]:
    incoming = load_params(workspace).ingest.incoming_dir
    runs = []
    for spec in specs:
        folder = make_batch(deliveries / spec.name, spec)
        submit([folder], incoming, spec.name)
        run = process_next_batch(workspace, run_id=f"demo-{spec.name}")
        runs.append(run)
        print("\n".join(describe(spec.name, run)), file=out, flush=True)
    return runs


def describe_training(outcome: TrainingOutcome, alias: str) -> list[str]:
    """The new run and where the production alias points after it."""
    where = "moved to it" if outcome.promoted else f"stays at version {outcome.production_version}"
    return [
        f"  trained: run {outcome.run_id} on {outcome.master_rows} rows, "
        f"{outcome.eval_metric}={outcome.score:.3f}",
        f"  registered as version {outcome.model_version}; '{alias}' {where}",
    ]


def policy_step(workspace: Path, out: TextIO, full: bool) -> RetrainDecision:
    """Ask the retrain policy, print its chain (or just its verdict), and train when it says so."""
    params = load_params(workspace)
    decision = workspace_decision(params)
    record_decision(params, decision.to_json(), "demo")
    if full:
        print("\n".join(f"  {line}" for line in explain(decision)), file=out, flush=True)
    else:
        verdict = "RETRAIN" if decision.retrain else "no retrain"
        print(f"  policy: {verdict} - {decision.reason}", file=out, flush=True)
    if decision.retrain:
        outcome = train_from_decision(workspace, decision, requested_by="demo")
        alias = load_params(workspace).train.production_alias
        print("\n".join(describe_training(outcome, alias)), file=out, flush=True)
    return decision


def run_direct(workspace: Path, deliveries: Path, out: TextIO) -> None:
    """Each batch through `dvc repro` in this process; the policy, and training, after them."""
    print("\n== processing sample batches with `dvc repro` ==", file=out, flush=True)
    deliver_and_process(workspace, deliveries, demo_batches(), out)
    print("\n== retrain policy: the decision chain ==", file=out, flush=True)
    policy_step(workspace, out, full=True)
    print("\n== second pass: more batches, the policy after each ==", file=out, flush=True)
    for spec in second_pass_batches():
        deliver_and_process(workspace, deliveries, [spec], out)
        policy_step(workspace, out, full=False)


def describe_runs(label: str, workspace: Path, runs: BatchRuns) -> list[str]:
    """One batch's account: its figures, then what each DAG run did."""
    params = load_params(workspace)
    state = runs.data_run["state"]
    if runs.claim is None:
        return [f"{label}: data_pipeline_dag {state}; the drop folder refused it (see the log)"]
    batch_id = str(runs.claim["batch_id"])
    report = read_report(params.validate.validated_dir, batch_id) or {}
    rows = read_json(params.merge.metrics_file)["master_rows"]
    first = runs.claim.get("duplicate_of")
    if isinstance(first, dict):
        lines = describe_duplicate(label, first, rows)
    elif report:
        lines = describe_report(label, batch_id, report, rows)
    else:
        lines = [f"{label}: {state}"]
    lines.append(f"  data_pipeline_dag: {state}")
    if runs.decision is not None:
        verdict = "RETRAIN" if runs.decision["retrain"] else "no retrain"
        # process_batch decides in the data run; the policy DAG runs (and decides) to train
        decided_by = "data_pipeline_dag" if runs.policy_run is None else "retrain_policy_dag"
        lines.append(f"  decision ({decided_by}): {verdict} - {runs.decision['reason']}")
    if runs.train_run is not None:
        trained = runs.trained or {}
        alias = params.train.production_alias
        if runs.train_run["state"] != "success" or not trained:
            lines.append(f"  train_pipeline_dag: {runs.train_run['state']}")
        else:
            where = (
                "moved to it"
                if trained["promoted"]
                else f"stays at version {trained['production_version']}"
            )
            lines.append(
                f"  train_pipeline_dag: version {trained['model_version']} "
                f"({trained['eval_metric']}={trained['score']:.3f}) on {trained['master_rows']} "
                f"rows; '{alias}' {where}"
            )
    return lines


def run_with_airflow(workspace: Path, base: Path, out: TextIO) -> None:
    """Each batch delivered, then followed through the three DAGs on a real scheduler."""
    stack = AirflowStack(workspace, base / "airflow", port=free_port())
    print(f"\n== starting Airflow at {stack.url} (SQLite, LocalExecutor) ==", file=out, flush=True)
    started = time.monotonic()
    stack.start()
    try:
        stack.wait_for_run(DATA_DAG, timeout=180)  # the first scheduled run
        print(f"ready in {time.monotonic() - started:.0f} s", file=out, flush=True)
        incoming = load_params(workspace).ingest.incoming_dir
        last: dict[str, Any] | None = None
        passes = [("first pass", demo_batches()), ("second pass", second_pass_batches())]
        for title, specs in passes:
            print(
                f"\n== {title}: data_pipeline_dag -> retrain_policy_dag -> train_pipeline_dag ==",
                file=out,
                flush=True,
            )
            for spec in specs:
                submit([make_batch(base / "deliveries" / spec.name, spec)], incoming, spec.name)
                runs = stack.follow_batch(spec.name)
                last = runs.decision or last
                print("\n".join(describe_runs(spec.name, workspace, runs)), file=out, flush=True)
        if last is not None:
            print("\n== the last retrain decision, step by step ==", file=out)
            print(
                "\n".join(f"  {line}" for line in explain(RetrainDecision.from_json(last))),
                file=out,
            )
    finally:
        stack.stop()
        print("\nAirflow stopped.", file=out, flush=True)


def clear_base(base: Path, out: TextIO) -> None:
    """Delete an earlier demo's folder, unless a live process (not its left-overs) uses it."""
    left = stop_orphans(base / "airflow")
    if left:
        print(f"stopped what an interrupted demo left running: {', '.join(left)}", file=out)
    users = processes_using(base)
    if users:
        raise MainstemError(
            f"{base} is in use by {'; '.join(users)}; stop "
            f"{'it' if len(users) == 1 else 'them'} (`make stack-down` stops `make stack`, Ctrl-C "
            "stops `make airflow`) and run the demo again. Nothing was deleted."
        )
    shutil.rmtree(base)


def run_demo(base: Path, out: TextIO, direct: bool = False) -> Path:
    """Start over in `base`, process the sample batches, and print what happened.

    By default the batches go through the real Airflow scheduler; `direct` runs the same steps
    in this process instead, for a quick look.
    """
    if base.exists():
        clear_base(base, out)
    base.mkdir(parents=True)
    print(f"workspace: {base / 'workspace'} (DVC remote: {base / 'remote'})", file=out)
    workspace = create_workspace(base / "workspace")
    # MLflow logs each store migration at INFO; the demo's reader wants the decision, not those.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if direct:
        run_direct(workspace, base / "deliveries", out)
    else:
        run_with_airflow(workspace, base, out)
    log = git(["log", "--format=%h %s"], workspace).stdout
    print("\n== lineage: git log in the workspace ==", file=out)
    print(log.rstrip(), file=out)
    page = refresh_pipeline_page(workspace)
    if page is not None:
        print(f"\npipeline page: {page}", file=out)
    return workspace
