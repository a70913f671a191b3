"""`mainstem upgrade`: bring a workspace of the old raw layout to the packed one, in one commit.

In: a workspace whose `data/raw/` holds one folder per batch (`<batch_id>/batch.json` and
`files/`, one DVC output for all of them), with no batch claimed. Out: each of those batches
packed as ingest packs them (every byte hashed again against its `batch.json`), the pack in the
DVC cache and pushed, its index records written, the folders removed, the workspace's pipeline
code replaced by this library's, `dvc repro merge` run over the packs, and one commit saying what
changed. A validated store of the old layout (one DVC output holding every batch's report
folder and a shared image store) is cleared, and that `dvc repro merge` re-validates every batch
into the packed layout (flow/validated_upgrade.py), whose files the push then carries.
Commits made before the upgrade keep their old `dvc.lock`, whose objects stay in the
remote, so they still check out and pull. Running it again changes nothing.

An index of the release before segment files (one record file per batch) is folded into
segments first (flow/index_upgrade.py), in the same commit.

`transfer_packs` is also how the packs an index names are fetched into a cache that lacks them
(`mainstem upgrade --fetch-raw`): through a scratch `.dvc` file naming them by md5.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import yaml

from mainstem.commands import dvc
from mainstem.durable import fsync_dir, read_json
from mainstem.errors import LockError
from mainstem.flow.batch import REPRO_TARGET, lineage_paths, master_rows
from mainstem.flow.index_upgrade import fold_indexes
from mainstem.flow.lineage import record
from mainstem.flow.params_upgrade import with_new_ignores, with_new_params
from mainstem.flow.pipeline import PIPELINE_PATHS, pipeline_changes
from mainstem.flow.runner import push_outputs, remote_configured
from mainstem.flow.validated_upgrade import (
    clear_legacy_validated,
    drop_ignored_output,
    legacy_entries,
)
from mainstem.flow.workspace import PIPELINE_FILES
from mainstem.intake import lock
from mainstem.intake.delivery import DeliveredFile
from mainstem.intake.ingest import list_raw_batches
from mainstem.intake.raw_store import (
    BATCH_FILE,
    FILES_DIR,
    RawRecord,
    cached_pack,
    pack_path,
    record_of,
    write_pack,
    write_record,
)
from mainstem.intake.raw_tombstones import tombstone_of
from mainstem.params import load_params

log = logging.getLogger(__name__)
CODE = ("dvc.yaml", ".dvcignore", "stages", "mainstem", "dags")
_SCRATCH_DVC = ".mainstem-packs.dvc"
TRAIN_STAGE = "train"


def legacy_batches(raw_dir: Path) -> list[Path]:
    """The per-batch folders of the old layout, in sequence order."""
    if not raw_dir.is_dir():
        return []
    found = [p for p in raw_dir.iterdir() if p.is_dir() and (p / BATCH_FILE).is_file()]
    return sorted(found, key=lambda p: int(read_json(p / BATCH_FILE)["sequence"]))


def pack_legacy_batch(root: Path, raw_dir: Path, folder: Path) -> RawRecord:
    """Pack one old-layout batch into the DVC cache and the index; its record."""
    meta = read_json(folder / BATCH_FILE)
    done = record_of(raw_dir, str(meta["batch_id"]))
    if done is not None:
        return done
    files = [DeliveredFile(f["path"], int(f["size"]), f["sha256"]) for f in meta["files"]]
    head = {"batch_id": meta["batch_id"], "sequence": meta["sequence"], "name": meta.get("name")}
    scratch = raw_dir / f".{folder.name}.upgrade.staging"
    md5, sha256, size = write_pack(scratch, head, folder / FILES_DIR, files)
    target = cached_pack(root, md5)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch, target)
    fsync_dir(target.parent)
    found = RawRecord(str(meta["batch_id"]), int(meta["sequence"]), head["name"], md5, sha256, size)
    write_record(raw_dir, found)
    return found


def transfer_packs(root: Path, records: list[RawRecord], verb: str) -> None:
    """`dvc push` or `dvc fetch` the packs of `records`, named by md5 in a scratch .dvc file."""
    if not records or not remote_configured(root):
        return
    outs = [
        {"md5": r.md5, "size": r.size, "hash": "md5", "path": f".packs/{r.md5}"} for r in records
    ]
    scratch = root / _SCRATCH_DVC
    scratch.write_text(yaml.safe_dump({"outs": outs}), encoding="utf-8")
    try:
        dvc([verb, "--quiet", _SCRATCH_DVC], root)
    finally:
        scratch.unlink(missing_ok=True)


def fetch_raw(root: Path) -> int:
    """Fetch every pack the index names and the DVC cache lacks; how many were missing.

    Packs retention dropped (`mainstem gc`) are gone from the remote too, and are not asked for.
    """
    raw_dir = load_params(root).ingest.raw_dir
    missing = [
        r
        for r in list_raw_batches(raw_dir)
        if not cached_pack(root, r.md5).is_file() and tombstone_of(raw_dir, r.batch_id) is None
    ]
    transfer_packs(root, missing, "fetch")
    return len(missing)


def _copy_code(source: Path, root: Path) -> None:
    for name in CODE:
        origin, target = source / name, root / name
        if origin.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)


def _drop_ignored_raw(raw_dir: Path) -> Path:
    """Stop git ignoring all of the raw folder (the old output's entry): the index is git's."""
    ignore = raw_dir.parent / ".gitignore"
    if ignore.is_file():
        entry = f"/{raw_dir.name}"
        lines = ignore.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() != entry]
        if kept != lines:
            ignore.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    return ignore


def _add_new_settings(source: Path, root: Path) -> list[str]:
    """Give the workspace the params keys, git ignores and pipeline state files its pipeline code
    now needs and it lacks, keeping every value it has; what was added."""
    added: list[str] = []
    for name, merge in (("params.yaml", with_new_params), (".gitignore", with_new_ignores)):
        target = root / name
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        text, new = merge(current, (source / name).read_text(encoding="utf-8"))
        if new:
            target.write_text(text, encoding="utf-8")
            added.extend(f"{name}: {item}" for item in new)
    for name in PIPELINE_FILES:
        origin, target = source / name, root / name
        if origin.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
            added.append(f"{name} (new)")
    return added


def _validated_line(root: Path, validated_dir: Path, batches: int) -> str:
    relative = validated_dir.relative_to(root).as_posix()
    return (
        f"{relative}/ (one DVC output: {batches} report folders and a shared image store) was "
        f"re-validated into {relative}/batch/ (the batch in process, its images as one pack), "
        f"every batch's results in the DVC cache, named by the git-tracked records in "
        f"{relative}/index/. "
    )


def _settings_line(settings: list[str]) -> str:
    return f"added: {'; '.join(settings)}\n" if settings else ""


def upgrade_workspace(root: Path, source: Path) -> str | None:
    """Upgrade the workspace at `root` to the packed raw layout and `source`'s pipeline code.

    The commit, or None when there was nothing to upgrade. Refused while a batch is claimed.
    """
    root = Path(root).resolve()
    params = load_params(root)
    holder = lock.read_owner(params.ingest.incoming_dir)
    if holder is not None:
        raise LockError(
            f"batch {holder.batch_id} is claimed by {holder.describe()}; let it finish "
            "(`mainstem process` resumes it), then run `mainstem upgrade` again"
        )
    raw_dir = params.ingest.raw_dir
    folded = fold_indexes(raw_dir, params.validate.validated_dir)
    folders = legacy_batches(raw_dir)
    rows_before = master_rows(params)
    packed = [pack_legacy_batch(root, raw_dir, folder) for folder in folders]
    if packed:
        shutil.copy2(cached_pack(root, packed[-1].md5), pack_path(raw_dir))
        transfer_packs(root, packed, "push")
    for folder in folders:
        shutil.rmtree(folder)
    ignore = _drop_ignored_raw(raw_dir)
    validated_dir = params.validate.validated_dir
    legacy_validated = bool(legacy_entries(validated_dir))
    revalidated = clear_legacy_validated(validated_dir)
    drop_ignored_output(validated_dir)
    settings: list[str] = []
    if source.resolve() != root:
        _copy_code(source, root)
        settings = _add_new_settings(source, root)
    if not packed and not legacy_validated and not folded.any and not pipeline_changes(root):
        log.info("%s already keeps one pack per batch and runs this code; nothing to upgrade", root)
        return None
    dvc(["repro", REPRO_TARGET], root)
    # The trained model stands: new library code is no new training. Its stage's recorded code
    # deps follow the upgrade, so the commit checks out with `dvc status` up to date.
    dvc(["commit", "--force", "--quiet", TRAIN_STAGE], root)
    push_outputs(root)
    rows_after = master_rows(load_params(root))
    if packed:
        subject = f"upgrade: raw store packed, one file per batch ({len(packed)} batches packed)"
    elif legacy_validated:
        subject = (
            f"upgrade: validated store packed, one image pack per batch ({revalidated} batches)"
        )
    else:
        subject = f"upgrade: indexes in segment files ({folded.raw} batches)"
    raw_line = (
        f"data/raw/<batch_id>/ folders (one DVC output for every batch) became "
        f"{pack_path(raw_dir).relative_to(root).as_posix()} (the batch in process) and "
        f"{len(packed)} packs in the DVC cache, named by the git-tracked records in "
        f"{(raw_dir / 'index').relative_to(root).as_posix()}/. "
    )
    message = (
        f"{subject}\n\n"
        f"{raw_line if packed else ''}"
        f"{_validated_line(root, validated_dir, revalidated) if legacy_validated else ''}"
        f"{folded.describe() + '. ' if folded.any else ''}"
        f"The pipeline code is "
        f"mainstem's current one (the model stands: train's code deps are re-recorded, not "
        f"retrained); earlier commits keep their own dvc.lock and still pull.\n"
        f"{_settings_line(settings)}"
        f"master: {rows_before} → {rows_after} rows"
    )
    state = [root / name for name in PIPELINE_FILES if (root / name).is_file()]
    paths = [*(root / name for name in (*PIPELINE_PATHS, ".dvcignore")), *state]
    return record(root, [*paths, ignore, *lineage_paths(params)], message)
