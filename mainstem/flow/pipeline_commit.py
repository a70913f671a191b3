"""The pipeline commit: a change to the pipeline, recorded before any batch runs under it.

In: a workspace whose pipeline files (params.yaml, contracts, dvc.yaml, stage and library code)
differ from its last commit, and no batch claimed. Out: `dvc repro merge` over the batches already
ingested, under the changed pipeline, then one commit holding the change and everything it
produced (dvc.lock, metrics), whose message says what changed: "pipeline: validate.contract_version
1 → 2 (contract produce/v2)", the files, and the master's rows before and after.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from mainstem.commands import dvc, git
from mainstem.errors import LockError
from mainstem.flow.batch import REPRO_TARGET, lineage_paths, master_before, master_rows
from mainstem.flow.lineage import record
from mainstem.flow.pipeline import PIPELINE_PATHS, param_changes, pipeline_changes, pipeline_message
from mainstem.flow.runner import push_outputs
from mainstem.intake import lock
from mainstem.params import PARAMS_FILE, load_params

log = logging.getLogger(__name__)


def committed_params(root: Path) -> dict[str, Any]:
    """params.yaml as the last commit holds it; {} before the first."""
    shown = git(["show", f"HEAD:{PARAMS_FILE}"], root, check=False)
    loaded = yaml.safe_load(shown.stdout) if shown.returncode == 0 else None
    return loaded if isinstance(loaded, dict) else {}


def commit_pipeline(root: Path, note: str = "") -> str | None:
    """Re-run the pipeline under its changed files and commit both; the commit, or None if none.

    Refused while a batch is claimed: that batch finishes under the pipeline it was claimed with.
    """
    root = Path(root).resolve()
    params = load_params(root)
    changes = pipeline_changes(root)
    holder = lock.read_owner(params.ingest.incoming_dir)
    if holder is not None and changes:
        changed = " ".join(c.path for c in changes)
        raise LockError(
            f"batch {holder.batch_id} is claimed by {holder.describe()} and finishes under the "
            f"committed pipeline: set the change aside (`git stash push --include-untracked -- "
            f"{changed}`), let the run finish or `mainstem process` resume it, then "
            "`git stash pop` and retry"
        )
    if not changes:
        log.info("the pipeline is as committed; nothing to record")
        return None
    before_rows = master_before(params)[0] or 0  # as committed: an experiment moved the files
    params_changed = param_changes(committed_params(root), load_params_raw(root))
    dvc(["repro", REPRO_TARGET], root)
    push_outputs(root)
    contract = f"{params.validate.dataset}/v{params.validate.contract_version}"
    message = pipeline_message(
        params_changed, changes, contract, (before_rows, master_rows(params)), note
    )
    paths = [root / name for name in PIPELINE_PATHS]
    return record(root, [*paths, *lineage_paths(params)], message)


def load_params_raw(root: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}
