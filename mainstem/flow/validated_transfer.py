"""Moving past batches' validated files between the DVC cache and the remote.

In: a workspace root. Out: after a rebuild (a new contract or code re-validated every batch, so
every past batch's five files went straight into the DVC cache, outside any `dvc.lock`), a push
of those files to the remote; and a fetch of every file the validated index names and the cache
lacks (a fresh clone), or of one batch's files (a worker releasing a batch an earlier commit
recorded). Both go through a scratch `.dvc` file naming the objects by md5, as
`mainstem upgrade` does for raw packs. A rebuild is told apart by the store's `state.json`
differing from the last commit's: an ordinary batch pushes nothing here, so its push stays flat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import yaml

from mainstem.commands import dvc
from mainstem.flow.lineage import committed_text
from mainstem.intake.raw_store import cached_pack
from mainstem.params import load_params
from mainstem.validation.layout import INDEX, STATE, last_validated, record_of, records_between

log = logging.getLogger(__name__)
_SCRATCH_DVC = ".mainstem-validated.dvc"


def _objects(root: Path, only_missing: bool) -> list[str]:
    """The md5 of every file the validated index names (only those the cache lacks, if asked)."""
    validated = load_params(root).validate.validated_dir
    found = {
        md5
        for record in records_between(validated, 1, last_validated(validated))
        for md5 in record.files.values()
    }
    return sorted(md5 for md5 in found if not (only_missing and cached_pack(root, md5).is_file()))


def transfer(root: Path, md5s: list[str], verb: str, run: Callable[[list[str]], object]) -> None:
    """`dvc push` or `dvc fetch` the objects `md5s`, named in a scratch .dvc file."""
    if not md5s:
        return
    outs = [{"md5": md5, "hash": "md5", "path": f".validated/{md5}"} for md5 in md5s]
    scratch = root / _SCRATCH_DVC
    scratch.write_text(yaml.safe_dump({"outs": outs}), encoding="utf-8")
    try:
        run([verb, "--quiet", _SCRATCH_DVC])
    finally:
        scratch.unlink(missing_ok=True)


def rebuilt(root: Path) -> bool:
    """Whether the validated store was rebuilt since the last commit."""
    state = load_params(root).validate.validated_dir / INDEX / STATE
    now = state.read_text(encoding="utf-8") if state.is_file() else None
    return now is not None and committed_text(root, state) != now


def push_rebuilt(root: Path, run: Callable[[list[str]], object] | None = None) -> int:
    """After a rebuild, push every past batch's validated files; how many objects were named."""
    if not rebuilt(root):
        return 0
    md5s = _objects(root, only_missing=False)
    transfer(root, md5s, "push", run or (lambda args: dvc(args, root)))
    log.info("pushed the validated files of the rebuilt store (%d objects)", len(md5s))
    return len(md5s)


def fetch_validated(root: Path) -> int:
    """Fetch every validated file the index names and the cache lacks; how many were missing."""
    md5s = _objects(root, only_missing=True)
    transfer(root, md5s, "fetch", lambda args: dvc(args, root))
    return len(md5s)


def fetch_batch(root: Path, batch_id: str) -> int:
    """Fetch the validated files of batch `batch_id` the cache lacks; how many were missing.

    A clone's pull brings only the last batch's files; a drop-zone worker that finds a batch it
    claimed already recorded by an earlier commit needs that batch's report to release it.
    """
    record = record_of(load_params(root).validate.validated_dir, batch_id)
    if record is None:
        return 0
    md5s = sorted({m for m in record.files.values() if not cached_pack(root, m).is_file()})
    transfer(root, md5s, "fetch", lambda args: dvc(args, root))
    return len(md5s)
