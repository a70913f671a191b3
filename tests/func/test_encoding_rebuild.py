"""A change to the code that encodes the stored data reaches the batches stored before it.

Validation and the master keep what an earlier run built when its fingerprint still matches, and
extend it. The fingerprint covers the code dvc.yaml declares for the stage, so a change to the
Parquet encoding (mainstem/validation/columnar.py) rebuilds what was built with the old one: an
incremental run then leaves the same bytes as a rebuild from scratch with the new code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mainstem.commands import dvc
from mainstem.flow.batch import process_next_batch
from mainstem.flow.pipeline_commit import commit_pipeline
from mainstem.flow.workspace import configure_remote
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params
from mainstem.validation.layout import ACCEPTED, last_validated, records_between, result_file

SPECS = [
    BatchSpec(1, first_id=1, rows=12, bad_rows=1, image_size=16),
    BatchSpec(2, first_id=8, rows=10, table_format="parquet", image_size=16),
    BatchSpec(3, first_id=15, rows=10, image_size=16),
]
COLUMNAR = Path("mainstem") / "validation" / "columnar.py"
OLD_ENCODING, NEW_ENCODING = '"compression": "zstd"', '"compression": "gzip"'


def change_encoding(workspace: Path) -> None:
    """Switch the workspace's own copy of the library to another Parquet compression.

    The change is recorded in a pipeline commit, as no batch runs under uncommitted code.
    """
    source = (workspace / COLUMNAR).read_text()
    assert OLD_ENCODING in source, f"{COLUMNAR} no longer sets {OLD_ENCODING}; update this test"
    (workspace / COLUMNAR).write_text(source.replace(OLD_ENCODING, NEW_ENCODING))
    assert commit_pipeline(workspace) is not None


def deliver_and_process(workspace: Path, spec: BatchSpec, deliveries: Path) -> None:
    folder = make_batch(deliveries / spec.name, spec)
    submit([folder], load_params(workspace).ingest.incoming_dir, spec.name)
    run = process_next_batch(workspace)
    assert run.report is not None
    assert run.report["status"] == "accepted"


def stored_data(workspace: Path) -> dict[str, bytes]:
    """The accepted rows of every validated batch and every file of the master, with their bytes."""
    params = load_params(workspace)
    validated = params.validate.validated_dir
    master = params.merge.master_dir
    files = {
        f"validated/{record.batch_id}/accepted.parquet": result_file(
            validated, record, ACCEPTED, workspace
        ).read_bytes()
        for record in records_between(validated, 1, last_validated(validated))
    }
    files.update({f"master/{path.name}": path.read_bytes() for path in sorted(master.iterdir())})
    return files


def test_encoding_change_gives_the_bytes_of_a_rebuild(
    workspace: Path, workspace_template: Path, tmp_path: Path
) -> None:
    for spec in SPECS[:2]:
        deliver_and_process(workspace, spec, tmp_path / "deliveries")
    before = stored_data(workspace)

    change_encoding(workspace)
    deliver_and_process(workspace, SPECS[2], tmp_path / "deliveries")
    incremental = stored_data(workspace)

    fresh = tmp_path / "rebuild" / "workspace"
    shutil.copytree(workspace_template, fresh, symlinks=True)
    configure_remote(fresh)
    change_encoding(fresh)
    for spec in SPECS:
        deliver_and_process(fresh, spec, tmp_path / "rebuild" / "deliveries")
    rebuilt = stored_data(fresh)

    assert sorted(incremental) == sorted(rebuilt)
    assert len([name for name in rebuilt if name.endswith("accepted.parquet")]) == 3
    assert incremental == rebuilt
    # the first batches were stored with the old encoding, and have been re-encoded since
    re_encoded = [name for name in before if name.startswith("validated/")]
    assert len(re_encoded) == 2
    assert all(before[name] != incremental[name] for name in re_encoded)
    assert "up to date" in dvc(["status"], workspace).stdout


def test_bytecode_in_code_folders_leaves_the_pipeline_up_to_date(workspace: Path) -> None:
    for package in ("intake", "validation", "master"):
        cache = workspace / "mainstem" / package / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / "stray.cpython-311.pyc").write_bytes(b"\x00not the source")
    (workspace / "mainstem" / "validation" / "stray.pyc").write_bytes(b"\x00beside the source")

    assert "up to date" in dvc(["status"], workspace).stdout
