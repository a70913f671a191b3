"""Run one DVC stage and report it to OpenLineage: `python -m mainstem.openlineage.stage_run NAME`.

In: a stage name (dvc.yaml runs each stage through this module) and the workspace (the current
directory, as DVC runs commands in it). Out: the stage's own outputs and exit status, unchanged,
and, unless `openlineage.enabled` is false or `OPENLINEAGE_DISABLED=true`, its events (see
`reporting`). The stage's code is run in this process (`stages.<name>.main`, through the same
`run_entry` as `python -m stages.<name>`), so this module is not a DVC dependency of any stage:
changing how events are sent never re-runs a stage. Events are built as plain JSON (`spec`):
openlineage-python is imported only when a setting of its own asks for it (see `emitter`).

Under a batch process the command first offers itself to the warm stage host (`stage_client`,
`stage_host`), so it imports only the standard library before that.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def run_stage(stage: str, errors: list[BaseException] | None = None) -> int:
    """The stage's own entry point, as `python -m stages.<stage>` runs it.

    An exception the stage raises is added to `errors` before `run_entry` turns an operator's
    error into its one line and exit status 1, so a FAIL event can carry the message.
    """
    from mainstem.console import run_entry

    module = importlib.import_module(f"stages.{stage}")

    def observed() -> object:
        try:
            return module.main()
        except BaseException as error:
            if errors is not None:
                errors.append(error)
            raise

    return run_entry(observed, stage)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isidentifier():
        print("usage: python -m mainstem.openlineage.stage_run STAGE", file=sys.stderr)
        return 2
    from mainstem.errors import MainstemError
    from mainstem.openlineage.settings import disabled_by_environment, load_settings

    stage, root = args[0], Path.cwd()
    try:
        settings = load_settings(root)
    except MainstemError as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        return 1
    if not settings.enabled or disabled_by_environment():
        return run_stage(stage)
    from mainstem.openlineage.reporting import run_reported

    return run_reported(stage, root, settings, run_stage)


if __name__ == "__main__":
    from mainstem.openlineage.stage_client import hosted_status

    hosted = hosted_status(sys.argv)
    raise SystemExit(main() if hosted is None else hosted)
