"""The `mainstem` command: one verb per thing an operator does.

In: command-line arguments. Out: the action, a short report on stdout, and exit status 0; or one
line on stderr saying what to fix, and exit status 1. `process` says what became of the batch in
its exit status too (see `EXIT_STATUSES`); argparse's usage errors are 2. A reader that closes the
pipe early (`mainstem status | head -3`) ends the command quietly. Every verb has `--help`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import shlex
import sys
import threading
import time
import webbrowser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainstem.console import run_entry
from mainstem.progress import show_to_children

if TYPE_CHECKING:
    from mainstem.flow.batch import BatchRun
    from mainstem.local.airflow_api import VariablesRead
    from mainstem.training.policy import PolicyInputs

EXIT_OK = 0  # accepted, a duplicate, or nothing waiting
EXIT_ERROR = 1  # a problem to fix (one line on stderr); the batch, if claimed, resumes next run
EXIT_USAGE = 2  # argparse: the command line itself is wrong
EXIT_REJECTED = 3  # the contract rejected the batch, or the drop folder refused the delivery
EXIT_LOCKED = 4  # another live run holds the batch; nothing was done
EXIT_PIPE_CLOSED = 141  # the reader closed stdout early, as a shell reports a SIGPIPE
EXIT_STATUSES = f"""exit status:
  {EXIT_OK}  the batch was accepted (or was a duplicate), or nothing was waiting
  {EXIT_ERROR}  an error, printed on one line; a claimed batch is resumed by the next run
  {EXIT_USAGE}  the command line is wrong
  {EXIT_REJECTED}  the batch was rejected by the contract, or refused at the drop folder
  {EXIT_LOCKED}  the batch is locked by another live run; status says when it may be taken over"""


def _demo(args: argparse.Namespace) -> None:
    from mainstem.local.demo import default_base, run_demo

    run_demo(Path(args.base) if args.base else default_base(), sys.stdout, direct=args.direct)


def next_steps(workspace: Path, contract_missing: str | None = None) -> list[str]:
    """What to do with a new workspace, as commands to copy."""
    where = f"--workspace {shlex.quote(str(workspace))}"
    first = []
    if contract_missing is not None:
        first = [
            f"  mainstem contract infer {where} SAMPLE --dataset {contract_missing} --key COLUMN"
            "   # draft its contract from a sample; review it",
            "  # then declare train.task, train.label and train.features in params.yaml",
            f"  mainstem pipeline commit {where}   # record the contract and the training",
        ]
    return [
        "next steps:",
        *first,
        f"  mainstem submit {where} --name NAME FILES_OR_FOLDERS   # deliver a batch",
        f"  mainstem process {where}   # claim it and run it through the pipeline",
        f"  mainstem status {where}    # the drop folder, the lock, the last batches",
        f"  mainstem report {where} NAME   # the path of the batch's HTML report",
        f"  mainstem retrain run {where}   # decide, and train when the master grew enough",
    ]


def _init(args: argparse.Namespace) -> None:
    from mainstem.flow.workspace import WorkspaceChoices, create_workspace
    from mainstem.params import load_params

    target = Path(args.path).resolve()
    # A workspace's own remote by default: two workspaces side by side never share one.
    remote = args.remote or (f"../{target.name}-remote" if args.dataset else None)
    path = create_workspace(target, choices=WorkspaceChoices(args.dataset, remote))
    params = load_params(path)
    dataset, url = params.validate.dataset, remote or params.remote.url
    print(f"workspace ready at {path} (dataset {dataset}, DVC remote {url})")
    missing = None if params.validate.contract_path.exists() else params.validate.dataset
    print("\n".join(next_steps(path, missing)))


def _submit(args: argparse.Namespace) -> None:
    from mainstem.intake.queue import describe_queue, queue_summary, ready_entries
    from mainstem.intake.submit import submit_to_queue
    from mainstem.params import load_params

    if args.to is not None:
        _submit_to_s3(args, args.to, "")
        return
    ingest = load_params(args.workspace).ingest
    if ingest.drop_zone_url:
        _submit_to_s3(args, ingest.drop_zone_url, ingest.s3_endpoint_url)
        return
    incoming = ingest.incoming_dir
    entry, manifest = submit_to_queue([Path(p) for p in args.paths], incoming, args.name)
    files = manifest["files"]
    count = len(files) if isinstance(files, list) else 0
    print(f"delivered {count} files to {incoming / entry}")
    print(describe_queue(queue_summary(ready_entries(incoming), time.time())))


def _submit_to_s3(args: argparse.Namespace, zone: str, endpoint: str) -> None:
    from mainstem.intake.s3_submit import submit_to_s3

    print(f"delivered to {submit_to_s3([Path(p) for p in args.paths], zone, args.name, endpoint)}")


def process_status(run: BatchRun) -> int:
    """The exit status of `mainstem process` for what became of the batch."""
    from mainstem.intake.dropfolder import Idle, Rejected

    claim = run.claim
    if isinstance(claim, Idle):
        return EXIT_LOCKED if claim.locked else EXIT_OK
    if isinstance(claim, Rejected) or (run.report or {}).get("status") == "rejected":
        return EXIT_REJECTED
    return EXIT_OK


def _process(args: argparse.Namespace) -> int:
    from mainstem.flow.batch import process_next_batch
    from mainstem.flow.queue_drain import drain_queue
    from mainstem.intake.dropfolder import Claimed
    from mainstem.local.batch_summary import describe

    root = Path(args.workspace)
    runs = drain_queue(root) if args.drain else iter([process_next_batch(root)])
    statuses = []
    for run in runs:
        claim = run.claim
        label = claim.name if isinstance(claim, Claimed) and claim.name else "batch"
        print("\n".join(describe(label, run)), flush=True)
        statuses.append(process_status(run))
    # a drain that met a rejected batch says so, though it went on with the next ones
    return EXIT_REJECTED if EXIT_REJECTED in statuses else statuses[-1]


def _worker_process(args: argparse.Namespace) -> int:
    from mainstem.flow.worker import WorkerSettings, process_batch
    from mainstem.local.batch_summary import describe

    settings = WorkerSettings(args.git_remote, args.dvc_remote, args.cache_dir, args.branch)
    done = process_batch(settings, Path(args.batch), args.scratch)
    print("\n".join(describe(Path(args.batch).name, done.run)))
    pulled = done.checkout.pulled
    print(f"  pulled: {pulled.files} objects, {pulled.bytes:,} bytes in {pulled.seconds:.1f} s")
    if done.commit:
        print(f"  lineage: {done.outcome} ({done.commit[:12]})")
    return process_status(done.run)


def _configured_airflow_variables(names: tuple[str, ...]) -> VariablesRead:
    """The Variables of the Airflow this process's environment configures, read in process."""
    from mainstem.local.airflow_api import VariablesRead

    home = os.environ.get("AIRFLOW_HOME")
    where = f"Airflow of AIRFLOW_HOME={home}" if home else "Airflow of AIRFLOW__DATABASE__*"
    try:
        # Airflow logs to stdout, which must hold only the report (and stay parseable as JSON).
        with contextlib.redirect_stdout(sys.stderr):
            from airflow.models.variable import Variable

            return VariablesRead(
                {name: Variable.get(name, default_var=None) for name in names}, where
            )
    except Exception as exc:  # a missing or unmigrated Airflow database: say so
        return VariablesRead(None, where, f"cannot be read: {exc}")


def _airflow_variables(args: argparse.Namespace, names: tuple[str, ...]) -> VariablesRead:
    """The Variables `names`, from the Airflow recorded in the workspace (`make airflow`, `make
    stack`), else the one the environment configures; with where they came from, or why not."""
    from mainstem.local.airflow_api import VariablesRead, read_record, read_variables

    if args.no_airflow:
        return VariablesRead(None, "Airflow not asked (--no-airflow)")
    workspace = Path(args.workspace)
    if read_record(workspace) is None and (
        os.environ.get("AIRFLOW_HOME") or os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    ):
        found = _configured_airflow_variables(names)
    else:
        found = read_variables(workspace, names)
    if found.error:
        print(
            f"mainstem: {found.where} {found.error}; the Variables the DAGs use are unknown, "
            "so DVC metrics and params.yaml are shown",
            file=sys.stderr,
        )
    return found


def _given_values(args: argparse.Namespace, found: VariablesRead) -> PolicyInputs:
    """The row count and threshold for the dry run: flags, else Airflow Variables, else None."""
    from mainstem.names import ROWS_VARIABLE, THRESHOLD_VARIABLE
    from mainstem.training.policy import PolicyInputs

    rows, threshold = args.current_rows, args.threshold
    rows_source = "--current-rows"  # when rows stays None, the master is counted through DVC
    threshold_source = "--threshold" if threshold is not None else THRESHOLD_VARIABLE
    variables = found.values or {}
    if rows is None and variables.get(ROWS_VARIABLE) is not None:
        rows = variables[ROWS_VARIABLE]
        rows_source = f"Airflow Variable {ROWS_VARIABLE}, from {found.where}"
    if threshold is None and variables.get(THRESHOLD_VARIABLE) is not None:
        threshold = variables[THRESHOLD_VARIABLE]
        threshold_source = f"Airflow Variable {THRESHOLD_VARIABLE}, from {found.where}"
    return PolicyInputs(rows, rows_source, threshold, threshold_source, args.in_flight)


def _airflow_line(found: VariablesRead) -> str:
    if found.error:
        return (
            f"airflow: {found.where} {found.error}; unknown Variables fall back to DVC and params"
        )
    if found.values is None:
        return f"airflow: {found.where}"
    return f"airflow: Variables read from {found.where}"


def _retrain_explain(args: argparse.Namespace) -> None:
    from mainstem.names import ROWS_VARIABLE, THRESHOLD_VARIABLE
    from mainstem.params import load_params
    from mainstem.training.dry_run import dry_run_decision
    from mainstem.training.policy import explain

    params = load_params(args.workspace)
    found = _airflow_variables(args, (ROWS_VARIABLE, THRESHOLD_VARIABLE))
    decision = dry_run_decision(params, _given_values(args, found))
    if args.json:
        print(
            json.dumps({**decision.to_json(), "airflow": found.to_json()}, indent=2, sort_keys=True)
        )
    else:
        print("retrain policy, dry run (nothing is triggered, nothing is written):")
        print("\n".join(f"  {line}" for line in [_airflow_line(found), *explain(decision)]))


def _retrain_run(args: argparse.Namespace) -> None:
    from mainstem.flow.train import train_from_decision
    from mainstem.params import load_params
    from mainstem.training.decision_log import record_decision
    from mainstem.training.policy import PolicyInputs, explain
    from mainstem.training.request import workspace_decision

    params = load_params(args.workspace)
    given = PolicyInputs(threshold=args.threshold, threshold_source="--threshold")
    decision = workspace_decision(params, given)
    record_decision(params, decision.to_json(), "mainstem retrain run")
    print("retrain policy:")
    print("\n".join(f"  {line}" for line in explain(decision)))
    if not decision.retrain:
        return
    outcome = train_from_decision(params.root, decision, "mainstem retrain run")
    where = "moved to it" if outcome.promoted else f"stays at version {outcome.production_version}"
    print(
        f"trained {params.train.model_name} version {outcome.model_version} "
        f"({outcome.eval_metric}={outcome.score:.4f}) on {outcome.master_rows} rows; "
        f"'{params.train.production_alias}' {where}"
    )


def _contract_infer(args: argparse.Namespace) -> None:
    from mainstem.params import load_params
    from mainstem.validation.infer import (
        draft_contract,
        image_columns,
        infer_columns,
        read_sample,
        write_draft,
    )

    params = load_params(args.workspace)
    root = params.root
    frame, folder = read_sample(Path(args.sample))
    images = image_columns(frame, folder)
    text = draft_contract(args.dataset, args.key, infer_columns(frame, args.key), images)
    path = write_draft(root / "contracts", args.dataset, text)
    print(f"draft contract written to {path}: review each CONFIRM comment")
    if images:
        print(f"image columns: {', '.join(images)}")
    if params.validate.dataset != args.dataset:
        print(f"then set validate.dataset: {args.dataset} in params.yaml")
    print("then declare train.task, train.label and train.features in params.yaml,")
    print(f"and record both: mainstem pipeline commit --workspace {shlex.quote(str(root))}")


def _samples(args: argparse.Namespace) -> None:
    from mainstem.local.samples import write_samples

    for folder in write_samples(args.dataset, Path(args.out)):
        print(folder)


def _status(args: argparse.Namespace) -> None:
    from mainstem.flow.status import describe, workspace_status
    from mainstem.names import ROWS_VARIABLE, THRESHOLD_VARIABLE
    from mainstem.params import load_params

    params = load_params(args.workspace)
    found = _airflow_variables(args, (THRESHOLD_VARIABLE, ROWS_VARIABLE))
    airflow = None if args.no_airflow else {"where": found.where, "error": found.error}
    status = workspace_status(params, time.time(), found.values, airflow)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print("\n".join(describe(status)))


def _report(args: argparse.Namespace) -> None:
    from mainstem.errors import MainstemError
    from mainstem.flow.status import can_open_browser, find_report
    from mainstem.params import load_params

    params = load_params(args.workspace)
    if args.pipeline == bool(args.batch):
        raise MainstemError("give either a BATCH (its report) or --pipeline (the pipeline page)")
    if args.pipeline:
        from mainstem.flow.pipeline_history import write_pipeline_page

        page = write_pipeline_page(params)
    else:
        page = find_report(params, args.batch)
    if args.open:
        if can_open_browser() and webbrowser.open(page.as_uri()):
            print(f"opened {page}")
            return
        print("mainstem: no display to open a browser on; the report is at:", file=sys.stderr)
    print(page)


def _stack_up(args: argparse.Namespace) -> None:
    from mainstem.local.stack import StackPorts, describe_stack, stack_up

    ports = StackPorts(args.postgres_port, args.mlflow_port, args.airflow_port, args.redis_port)
    extra = ", Redis and two Celery workers" if args.executor == "celery" else ""
    print(f"starting PostgreSQL, the MLflow server, Airflow{extra} (a minute or so)...", flush=True)
    state = stack_up(Path(args.state), Path(args.workspace), ports, args.executor)
    print("\n".join(describe_stack(state)))


def _pipeline_commit(args: argparse.Namespace) -> None:
    from mainstem.flow.pipeline_commit import commit_pipeline

    commit = commit_pipeline(Path(args.workspace))
    print(
        f"recorded {commit[:12]}" if commit else "the pipeline is as committed; nothing to record"
    )


def _upgrade(args: argparse.Namespace) -> None:
    from mainstem.flow.upgrade import fetch_raw, upgrade_workspace
    from mainstem.flow.workspace import source_root

    if args.fetch_raw:
        from mainstem.flow.validated_transfer import fetch_validated

        print(f"fetched the packs of {fetch_raw(Path(args.workspace))} raw batch(es)")
        print(f"fetched {fetch_validated(Path(args.workspace))} validated file(s)")
        return
    commit = upgrade_workspace(Path(args.workspace), source_root())
    print(f"upgraded in {commit[:12]}" if commit else "the workspace is up to date; nothing to do")


def _gc(args: argparse.Namespace) -> None:
    from mainstem.flow.gc import collect_garbage, describe_gc

    result = collect_garbage(Path(args.workspace), args.keep_raw, time.time(), args.dry_run)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print("\n".join(describe_gc(result)))


def _lineage_check(args: argparse.Namespace) -> None:
    from mainstem.errors import MainstemError
    from mainstem.flow.lineage_check import MISSING, check_commit

    missing = 0
    for rev in args.revs or ["HEAD"]:
        checks = check_commit(Path(args.workspace), rev)
        print(f"{rev}:")
        print("\n".join(f"  {c.describe()}" for c in checks))
        missing += sum(c.state == MISSING for c in checks)
    if missing:
        raise MainstemError(
            f"{missing} output(s) are in no DVC cache or remote and no retention dropped them; "
            "push them from a workspace that has them (`dvc push`)"
        )


def _contract_diff(args: argparse.Namespace) -> None:
    from mainstem.errors import MainstemError
    from mainstem.flow.contracts import contract_diff
    from mainstem.params import load_params
    from mainstem.validation.contract_diff import describe, exit_code

    try:  # exit statuses 1 and 2 mean non-breaking and breaking: a bad input exits 3
        params = load_params(args.workspace)
        changes = contract_diff(params, args.old, args.new)
    except MainstemError as exc:
        print(f"mainstem: error: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    if args.json:
        print(json.dumps([c.to_json() for c in changes], indent=2))
    else:
        dataset = params.validate.dataset
        print("\n".join(describe(changes, f"{dataset}/v{args.old}", f"{dataset}/v{args.new}")))
    raise SystemExit(exit_code(changes))


def _contract_check(args: argparse.Namespace) -> None:
    from mainstem.flow.contracts import contract_check, describe_check
    from mainstem.params import load_params

    check = contract_check(load_params(args.workspace), args.version, args.batches)
    if args.json:
        print(json.dumps(check.to_json(), indent=2, default=str))
    else:
        print("\n".join(describe_check(check)))


def _contract_use(args: argparse.Namespace) -> None:
    from mainstem.flow.contracts import describe_check, use_contract
    from mainstem.validation.contract_diff import describe

    switch = use_contract(Path(args.workspace), args.version, args.accept_breaking)
    print(
        "\n".join(
            [*describe(switch.changes, switch.old, switch.new), *describe_check(switch.check)]
        )
    )
    print(f"switched to {switch.new}; pipeline commit {(switch.commit or '')[:12]}")


def _master_diff(args: argparse.Namespace) -> None:
    from mainstem.flow.master_diff import describe_diff, master_diff
    from mainstem.params import load_params

    diff = master_diff(load_params(args.workspace), args.old, args.new)
    if args.json:
        print(json.dumps(diff.to_json(), indent=2, default=str))
    else:
        print("\n".join(describe_diff(diff)))


def _stack_down(args: argparse.Namespace) -> None:
    from mainstem.local.stack import stack_down

    stopped = stack_down(Path(args.state))
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


Verbs = Any  # argparse's sub-parser action, whose class argparse keeps private


def _workspace_option() -> argparse.ArgumentParser:
    """The option every verb that acts on a workspace shares, as a parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--workspace", default=".", help="pipeline workspace (default: .)")
    return parent


def _add_flow_verbs(verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    demo = verbs.add_parser(
        "demo", help="run sample batches through Airflow (or --direct: dvc repro) in .demo/"
    )
    demo.add_argument("--base", help="folder for the demo workspace (default: .demo/)")
    demo.add_argument(
        "--direct",
        action="store_true",
        help="run each batch with `dvc repro` in this process instead of through Airflow",
    )
    demo.set_defaults(func=_demo)

    init = verbs.add_parser(
        "init",
        help="create a pipeline workspace (git + DVC) at PATH",
        description="Create a workspace at PATH: a git and DVC repository of its own holding a "
        "copy of the pipeline (dvc.yaml, params.yaml, the contracts, the stages), an empty "
        "master and a first commit. Batches are delivered to its drop folder, processed there, "
        "and each one is recorded by a lineage commit in its history. Prints the next steps.",
    )
    init.add_argument("path", help="an empty or new folder")
    init.add_argument(
        "--dataset",
        metavar="NAME",
        help="the dataset (contracts/NAME/); its own DVC remote ../<folder>-remote unless --remote",
    )
    init.add_argument("--remote", metavar="URL", help="the DVC remote: a folder or s3://...")
    init.set_defaults(func=_init)

    submit = verbs.add_parser(
        "submit",
        parents=[workspace],
        help="deliver files or folders as one batch: files, manifest, then _READY",
        description="Copy the files (folders are walked) into a sub-folder of the workspace's "
        "drop folder of their own (named after --name), as one batch, as a producer would: "
        "the files first, then a manifest of their sizes and "
        "hashes, then the _READY marker, so a claim never sees half a delivery. Nothing is "
        "processed yet: run `mainstem process` (or let Airflow's data_pipeline_dag claim it).",
    )
    submit.add_argument("paths", nargs="+", help="files or folders to deliver")
    submit.add_argument("--name", help="a name for the batch, kept in its lineage")
    submit.add_argument(
        "--to",
        metavar="s3://BUCKET/PREFIX",
        help="deliver into this S3 drop zone instead of the workspace's drop folder "
        "(endpoint and credentials from the AWS environment variables)",
    )
    submit.set_defaults(func=_submit)

    process = verbs.add_parser(
        "process",
        parents=[workspace],
        help="claim the waiting batch and run it through the pipeline, without Airflow",
        description="Claim the batch waiting in the drop folder (or resume one a stopped or "
        "crashed run left claimed), snapshot it, validate it against the contract, merge it "
        "into the master, push to the DVC remote, commit its lineage and release the drop "
        "folder, all in this process. Prints what became of the batch. The drop folder is a "
        "queue, one sub-folder per batch: the oldest _READY is taken first.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    process.add_argument(
        "--drain",
        action="store_true",
        help="go on with the next batch, oldest _READY first, until none waits "
        "(exit status 3 when any was rejected)",
    )
    process.set_defaults(func=_process)


def _add_worker(verbs: Verbs) -> None:
    worker = verbs.add_parser("worker", help="the batch path on a machine with no workspace")
    worker_verbs = worker.add_subparsers(dest="worker_verb", required=True, metavar="VERB")
    process = worker_verbs.add_parser(
        "process",
        help="clone the lineage, pull what the batch needs, process it, push data then git",
        description="Clone the lineage repository from its git remote into a scratch folder, "
        "pull from the DVC remote only the outputs the batch path extends (not past raw "
        "batches), carry BATCH through the pipeline, `dvc push`, then `git push` the lineage "
        "commit. When another worker already pushed this batch, it stops as done; when the "
        "remote moved on without it, it fails and pushes nothing. Never force-pushes.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    process.add_argument(
        "batch",
        help="the claimed batch's folder (its files, or a drop-zone batch with _MANIFEST.json)",
    )
    process.add_argument("--git-remote", required=True, metavar="URL", help="the lineage remote")
    process.add_argument(
        "--dvc-remote",
        metavar="URL",
        help="the DVC remote (default: MAINSTEM_REMOTE_URL, else params.yaml's remote.url)",
    )
    process.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="a DVC cache this machine keeps"
    )
    process.add_argument("--branch", help="the lineage branch (default: the remote's HEAD)")
    process.add_argument(
        "--scratch", type=Path, metavar="DIR", help="keep the clone here (default: removed)"
    )
    process.set_defaults(func=_worker_process)


def _add_retrain(verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    retrain = verbs.add_parser("retrain", help="the retrain policy: whether to train now, and why")
    retrain_verbs = retrain.add_subparsers(dest="retrain_verb", required=True, metavar="SUBVERB")
    explain = retrain_verbs.add_parser(
        "explain",
        parents=[workspace],
        help="compute the policy's decision as a dry run and print its chain",
        description="Compute the retrain decision the retrain_policy DAG would make, and print "
        "each step with where each value came from. Values come from the flags, else the Airflow "
        "Variables of the workspace's Airflow (found through the .airflow.json that `make "
        "airflow` and `make stack` write; else the one AIRFLOW_HOME configures), else DVC "
        "metrics and params.yaml. When the recorded Airflow cannot be reached it says so. Nothing "
        "is triggered and nothing is written: without an MLflow store yet, none is created.",
    )
    explain.add_argument(
        "--current-rows", metavar="N", help="master rows now (default: CURRENT_MASTER_ROWS or DVC)"
    )
    explain.add_argument(
        "--threshold",
        metavar="N",
        help="new rows that justify retraining (default: RETRAIN_THRESHOLD_ROWS or params.yaml)",
    )
    explain.add_argument(
        "--in-flight", action="store_true", help="treat a training as already running"
    )
    explain.add_argument(
        "--no-airflow", action="store_true", help="do not ask Airflow for its Variables"
    )
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")
    explain.set_defaults(func=_retrain_explain)
    _add_retrain_run(retrain_verbs, workspace)


def _add_retrain_run(retrain_verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    run = retrain_verbs.add_parser(
        "run",
        parents=[workspace],
        help="decide, and when the decision says retrain: train, push and record lineage",
        description="The command line's counterpart of retrain_policy_dag and "
        "train_pipeline_dag: compute the retrain decision from DVC metrics and params.yaml, "
        "record it for `mainstem status`, and when it says retrain, run the train stage "
        "(`dvc repro train`), push to the DVC remote and commit the lineage, in this process.",
    )
    run.add_argument(
        "--threshold",
        metavar="N",
        help="new rows that justify retraining (default: params.yaml retrain.threshold_rows)",
    )
    run.set_defaults(func=_retrain_run)


def _add_contract(verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    contract = verbs.add_parser(
        "contract", help="data contracts: draft one from a sample; compare, check and switch"
    )
    contract_verbs = contract.add_subparsers(dest="contract_verb", required=True, metavar="SUBVERB")
    _add_contract_infer(contract_verbs, workspace)
    _add_contract_changes(contract_verbs, workspace)


def _add_contract_changes(contract_verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    diff = contract_verbs.add_parser(
        "diff",
        parents=[workspace],
        help="classify the changes from contract version A to B",
        description="Each change is breaking or non-breaking. Exit status: 0 no change, "
        "1 non-breaking only, 2 breaking, 3 a contract could not be read.",
    )
    diff.add_argument("old", type=int, metavar="A", help="contract version, e.g. 1")
    diff.add_argument("new", type=int, metavar="B", help="contract version, e.g. 2")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.set_defaults(func=_contract_diff)
    check = contract_verbs.add_parser(
        "check",
        parents=[workspace],
        help="replay contract N over the master and the last raw batches; changes nothing",
    )
    check.add_argument("version", type=int, metavar="N", help="contract version")
    check.add_argument(
        "--batches", type=int, default=3, metavar="K", help="raw batches to replay (default 3)"
    )
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(func=_contract_check)
    use = contract_verbs.add_parser(
        "use",
        parents=[workspace],
        help="diff, check, then switch to contract N in a pipeline commit",
    )
    use.add_argument("version", type=int, metavar="N", help="contract version")
    use.add_argument(
        "--accept-breaking",
        action="store_true",
        help="switch even though the change is breaking and drops master rows",
    )
    use.set_defaults(func=_contract_use)


def _add_contract_infer(contract_verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    infer = contract_verbs.add_parser(
        "infer",
        parents=[workspace],
        help="draft contracts/NAME/v1.yaml from a sample batch, CSV or Parquet",
        description="Infer a draft contract from SAMPLE (a batch folder, a CSV or a Parquet "
        "file): dtypes, nullability, ranges and allowed values as pandera infers them, the image "
        "columns (their values link to image files in the sample), each guessed rule with a "
        "CONFIRM comment. A released contract (one without the DRAFT line) is never overwritten.",
    )
    infer.add_argument("sample", help="a batch folder, a .csv or a .parquet file")
    infer.add_argument("--dataset", required=True, metavar="NAME", help="the dataset's name")
    infer.add_argument("--key", required=True, metavar="COLUMN", help="the primary key column")
    infer.set_defaults(func=_contract_infer)


def _add_samples(verbs: Verbs) -> None:
    samples = verbs.add_parser(
        "samples",
        help="write the sample batches of an example dataset (produce, costs) to OUT",
        description="Write deterministic sample batches of an example dataset into OUT, one "
        "folder per batch, ready for `mainstem submit`.",
    )
    samples.add_argument("out", help="folder to write the batches into")
    samples.add_argument("--dataset", default="produce", help="produce (default) or costs")
    samples.set_defaults(func=_samples)


def _add_views(verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    status = verbs.add_parser(
        "status",
        parents=[workspace],
        help="the drop folder, the lock, the last batches, master rows and the retrain policy",
        description="Show what waits in the drop folder and who holds its lock since when, the "
        "last batches and their outcome, master_rows from DVC metrics, RETRAIN_THRESHOLD_ROWS "
        "(the Variable of the workspace's Airflow, found through the .airflow.json that `make "
        "airflow` and `make stack` write, else params.yaml; it says where the value came from, "
        "and when that Airflow cannot be reached) and the policy's last decision. Reads only; "
        "changes nothing.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--no-airflow", action="store_true", help="do not ask Airflow for its Variables"
    )
    status.set_defaults(func=_status)

    report = verbs.add_parser(
        "report",
        parents=[workspace],
        help="print the path of a batch's HTML report (or, with --pipeline, the pipeline page)",
        description="Find the HTML report validate wrote for BATCH (its id, the first "
        "characters of its id, or its delivered name) and print its path. With --pipeline, "
        "build the workspace's pipeline page (master growth, batches, rejections, models over "
        "time) into reports/pipeline.html and print its path.",
    )
    report.add_argument("batch", nargs="?", help="batch id, a prefix of it, or the batch's name")
    report.add_argument(
        "--pipeline", action="store_true", help="build and show the pipeline page instead"
    )
    report.add_argument(
        "--open", action="store_true", help="open it in a browser when a display is available"
    )
    report.set_defaults(func=_report)


def _add_lineage(verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    pipeline = verbs.add_parser("pipeline", help="record a change of the pipeline in git")
    pipeline_verbs = pipeline.add_subparsers(dest="pipeline_verb", required=True, metavar="SUBVERB")
    commit = pipeline_verbs.add_parser(
        "commit",
        parents=[workspace],
        help="re-run the pipeline under its changed files and commit both",
        description="Batches are refused while params.yaml, dvc.yaml, contracts/, stages/, dags/ "
        "or mainstem/ differ from the last commit. This re-runs `dvc repro merge` under the "
        "change and commits it with its outputs, in a commit that says what changed.",
    )
    commit.set_defaults(func=_pipeline_commit)

    upgrade = verbs.add_parser(
        "upgrade",
        parents=[workspace],
        help="bring a workspace to this version's storage layout and code, in one commit",
        description="Packs each raw batch of the old layout (data/raw/<batch_id>/) into one file "
        "in the DVC cache, pushes it, indexes it in git, installs this version's pipeline code "
        "and re-runs `dvc repro merge`, in one commit that says what changed. Earlier commits "
        "still check out and pull. Refused while a batch is claimed; running it twice changes "
        "nothing.",
    )
    upgrade.add_argument(
        "--fetch-raw",
        action="store_true",
        help="instead, fetch from the DVC remote each raw pack and validated file the indexes "
        "name and the cache lacks",
    )
    upgrade.set_defaults(func=_upgrade)

    _add_retention(verbs, workspace)

    master = verbs.add_parser(
        "diff",
        parents=[workspace],
        help="keys added, updated and removed in the master between two commits or batches",
    )
    master.add_argument("old", metavar="A", help="a commit, or a batch id or name")
    master.add_argument("new", metavar="B", help="a commit, or a batch id or name")
    master.add_argument("--json", action="store_true", help="print the diff as JSON")
    master.set_defaults(func=_master_diff)


def _add_retention(verbs: Verbs, workspace: argparse.ArgumentParser) -> None:
    gc = verbs.add_parser(
        "gc",
        parents=[workspace],
        help="drop old raw packs from the DVC cache and remotes, recorded in lineage",
        description="Drops the raw pack of each batch whose successor's lineage commit is older "
        "than DAYS from the DVC cache and every DVC remote, after one `gc:` commit that records "
        "a tombstone per batch. Never the newest batch, nor one not merged yet; refused while a "
        "batch is claimed; running it twice drops nothing more. Dropped batches can no longer be "
        "re-validated (docs/storage.md, Retention).",
    )
    gc.add_argument(
        "--keep-raw", type=float, required=True, metavar="DAYS", help="age of raw packs to keep"
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    gc.add_argument("--json", action="store_true", help="print the result as JSON")
    gc.set_defaults(func=_gc)

    lineage = verbs.add_parser("lineage", help="check what lineage commits pin")
    lineage_verbs = lineage.add_subparsers(dest="lineage_verb", required=True, metavar="SUBVERB")
    check = lineage_verbs.add_parser(
        "check",
        parents=[workspace],
        help="whether each output a commit pins is stored, dropped by retention, or missing",
        description="Looks up each output of each commit's dvc.lock in the DVC cache and remotes, "
        "without fetching. Exit status 1 when one is missing and retention did not drop it.",
    )
    check.add_argument("revs", nargs="*", metavar="REV", help="commits to check (default: HEAD)")
    check.set_defaults(func=_lineage_check)


def _add_stack(verbs: Verbs) -> None:
    from mainstem.local.stack import StackPorts, default_state_dir, default_workspace

    stack = verbs.add_parser(
        "stack", help="PostgreSQL, the MLflow server and Airflow on 127.0.0.1 (make stack)"
    )
    stack_verbs = stack.add_subparsers(dest="stack_verb", required=True, metavar="SUBVERB")
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state", default=str(default_state_dir()), help="state folder (.stack/)")
    up = stack_verbs.add_parser(
        "up",
        parents=[state],
        help="start the services for a workspace and print how to reach them",
        description="Start a PostgreSQL 15 cluster, `mlflow server` with its tracking store on "
        "it, and Airflow's api-server, scheduler and dag-processor (LocalExecutor, metadata on "
        "PostgreSQL) for the workspace, all on 127.0.0.1; record their pids for `stack down`.",
    )
    defaults = StackPorts()
    up.add_argument(
        "--workspace",
        default=str(default_workspace()),
        help="workspace Airflow runs (default: .demo/workspace, created if missing)",
    )
    up.add_argument("--postgres-port", type=int, default=defaults.postgres, metavar="PORT")
    up.add_argument("--mlflow-port", type=int, default=defaults.mlflow, metavar="PORT")
    up.add_argument("--airflow-port", type=int, default=defaults.airflow, metavar="PORT")
    up.add_argument(
        "--executor",
        choices=["local", "celery"],
        default="local",
        help="Airflow's executor: local (LocalExecutor, the default) or celery (CeleryExecutor "
        "with a Redis broker and two Celery workers, each in its own folder under the state "
        "folder; docs/scaling.md)",
    )
    up.add_argument(
        "--redis-port", type=int, default=defaults.redis, metavar="PORT", help="with celery"
    )
    up.set_defaults(func=_stack_up)
    down = stack_verbs.add_parser(
        "down",
        parents=[state],
        help="stop what `stack up` started",
        description="Stop the processes `stack up` recorded in the state folder, Airflow "
        "first and PostgreSQL last.",
    )
    down.set_defaults(func=_stack_down)


def package_version() -> str:
    """The installed mainstem's version; the source tree's when it runs uninstalled."""
    try:
        return version("mainstem")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mainstem",
        description="Dropped batches in, a validated and versioned master dataset out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    workspace = _workspace_option()
    _add_flow_verbs(verbs, workspace)
    _add_worker(verbs)
    _add_retrain(verbs, workspace)
    _add_contract(verbs, workspace)
    _add_samples(verbs)
    _add_views(verbs, workspace)
    _add_lineage(verbs, workspace)
    _add_stack(verbs)
    return parser


def _stdout_closed() -> None:
    """The reader went away: send what is left to /dev/null and end without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_PIPE_CLOSED)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if isinstance(getattr(args, "workspace", None), str):
        # as params.yaml's paths are: resolved, so one is always relative to the other
        args.workspace = str(Path(args.workspace).resolve())
    show_to_children()
    try:
        status = run_entry(
            lambda: args.func(args), "mainstem", logging.INFO if args.verbose else logging.WARNING
        )
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()
    if status:
        raise SystemExit(status)


def run() -> None:
    """The `mainstem` command: `main`, then an exit that skips tearing down the interpreter.

    After a batch the process holds DVC, pandas, pyarrow and matplotlib, and Python's teardown of
    those modules took 0.4 s of every `mainstem process`. Exit handlers still run and the standard
    streams are flushed first; a non-daemon thread still running gets the ordinary exit, which
    waits for it, and an error that is a bug keeps its traceback.
    """
    try:
        main()
        status: object = 0
    except SystemExit as exit_:
        status = exit_.code
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()[1:]):
        raise SystemExit(status)
    if status is not None and not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = EXIT_PIPE_CLOSED
    sys.stderr.flush()
    os._exit(status or 0)


if __name__ == "__main__":
    run()
