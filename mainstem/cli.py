"""The `mainstem` command: one verb per thing an operator does.

In: command-line arguments. Out: the action, a short report on stdout, and exit status 0; or one
line on stderr saying what to fix, and exit status 1. Every verb has `--help`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mainstem.console import run_entry


def _demo(args: argparse.Namespace) -> None:
    from mainstem.demo import default_base, run_demo

    run_demo(Path(args.base) if args.base else default_base(), sys.stdout)


def _init(args: argparse.Namespace) -> None:
    from mainstem.workspace import create_workspace

    path = create_workspace(Path(args.path))
    print(f"workspace ready at {path}")


def _submit(args: argparse.Namespace) -> None:
    from mainstem.params import load_params
    from mainstem.submit import submit

    incoming = load_params(args.workspace).ingest.incoming_dir
    manifest = submit([Path(p) for p in args.paths], incoming, args.name)
    files = manifest["files"]
    print(f"delivered {len(files) if isinstance(files, list) else 0} files to {incoming}")


def _process(args: argparse.Namespace) -> None:
    from mainstem.batchflow import process_next_batch
    from mainstem.demo import describe
    from mainstem.dropfolder import Claimed

    run = process_next_batch(Path(args.workspace))
    claim = run.claim
    label = claim.name if isinstance(claim, Claimed) and claim.name else "batch"
    print("\n".join(describe(label, run)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mainstem",
        description="Dropped batches in, a validated and versioned master dataset out.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    demo = verbs.add_parser("demo", help="run the whole flow on sample data in .demo/")
    demo.add_argument("--base", help="folder for the demo workspace (default: .demo/)")
    demo.set_defaults(func=_demo)

    init = verbs.add_parser("init", help="create a pipeline workspace (git + DVC) at PATH")
    init.add_argument("path", help="an empty or new folder")
    init.set_defaults(func=_init)

    submit = verbs.add_parser(
        "submit", help="deliver files or folders as one batch: files, manifest, then _READY"
    )
    submit.add_argument("paths", nargs="+", help="files or folders to deliver")
    submit.add_argument("--name", help="a name for the batch, kept in its lineage")
    submit.add_argument("--workspace", default=".", help="pipeline workspace (default: .)")
    submit.set_defaults(func=_submit)

    process = verbs.add_parser(
        "process", help="claim the waiting batch and run it through the pipeline, without Airflow"
    )
    process.add_argument("--workspace", default=".", help="pipeline workspace (default: .)")
    process.set_defaults(func=_process)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_entry(
        lambda: args.func(args), "mainstem", logging.INFO if args.verbose else logging.WARNING
    )
