"""P15: what a stateless worker pulls for one batch, after 10 and after 100 batches of history.

In: a Size (`tiny` measures after 2 and 4 batches) and a scratch folder. Out, at each history
length: the bytes and seconds of the worker's pull (`mainstem.flow.worker.prepare`: clone, then
`dvc pull validate merge`) on a fresh machine (an empty DVC cache), and on a machine that kept
its cache from one batch earlier (so only what the last batch added is fetched), beside the
bytes that last batch pushed to the DVC remote; the size of the git clone; and each figure at
the longer history as a ratio to the shorter.

The history is P11's (`history_bench.seed` and `grow`: one real batch, then synthetic batches in
the pipeline's own layout), pushed to a bare git repository, the workers' only lineage remote.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchmarks import history_bench
from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.commands import git
from mainstem.flow import batch as batchflow
from mainstem.flow.worker import Checkout, WorkerSettings, prepare
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params

HISTORIES = {"full": (10, 100), "tiny": (2, 4)}
BOUND_RATIO = 1.3


def _tree_bytes(path: Path) -> int:
    return sum((Path(d) / f).stat().st_size for d, _dirs, files in os.walk(path) for f in files)


def _push_lineage(root: Path) -> None:
    git(["push", "--quiet", "origin", "HEAD:refs/heads/main"], root)


def _one_real_batch(workspace: history_bench.Workspace, work: Path) -> int:
    """One more batch through `mainstem process` in the workspace; the bytes it pushed."""
    number = workspace.batches + 1
    spec = BatchSpec(number, 1_000_000 + history_bench.PHOTOS * number, history_bench.PHOTOS)
    folder = make_batch(work / "deliveries" / spec.name, spec)
    submit([folder], load_params(workspace.root).ingest.incoming_dir, spec.name)
    before = _tree_bytes(workspace.remote)
    done = batchflow.process_next_batch(workspace.root)
    assert done.report is not None, done
    assert done.report["status"] == "accepted", done.report
    workspace.batches = number
    _push_lineage(workspace.root)
    return _tree_bytes(workspace.remote) - before


def _pulled(settings: WorkerSettings, scratch: Path) -> tuple[Checkout, int]:
    """A worker's clone and pull into `scratch`, then removed; the checkout and the clone's size."""
    checkout = prepare(settings, scratch)
    clone = _tree_bytes(checkout.root / ".git")
    shutil.rmtree(scratch)
    return checkout, clone


def measure_history(
    workspace: history_bench.Workspace, origin: Path, batches: int, work: Path
) -> dict[str, float]:
    """Grow the history to `batches`, then what a fresh worker and a kept-cache worker pull."""
    history_bench.grow(workspace, batches)
    _push_lineage(workspace.root)
    # a fresh machine's pull fills the cache it then keeps for its next batch
    kept = WorkerSettings(str(origin), str(workspace.remote), work / f"cache-{batches}")
    fresh, clone = _pulled(kept, work / f"fresh-{batches}")
    pushed = _one_real_batch(workspace, work)
    again, _clone = _pulled(kept, work / f"kept-{batches}")
    shutil.rmtree(work / f"cache-{batches}")
    return {
        "fresh bytes": fresh.pulled.bytes,
        "fresh seconds": fresh.pulled.seconds,
        "kept bytes": again.pulled.bytes,
        "kept seconds": again.pulled.seconds,
        "batch pushed": pushed,
        "clone bytes": clone,
    }


SHOWN = (
    ("fresh bytes", "fresh worker: dvc pull into an empty cache", "MB"),
    ("fresh seconds", "fresh worker: dvc pull time", "s"),
    ("kept bytes", "kept cache: dvc pull of one batch's changes", "MB"),
    ("kept seconds", "kept cache: dvc pull time", "s"),
    ("batch pushed", "bytes that batch pushed to the DVC remote", "MB"),
    ("clone bytes", "git clone of the lineage (.git)", "MB"),
)
RATIOS = ("fresh bytes", "fresh seconds", "kept bytes", "kept seconds")


def _targets(measured: dict[int, dict[str, float]], results: Results) -> None:
    shorter, longer = min(measured), max(measured)
    for key in RATIOS:
        what = next(label for name, label, _unit in SHOWN if name == key)
        base = measured[shorter][key]
        results.target(
            Target(
                "P15",
                f"{what}: after {longer:,} batches ÷ after {shorter:,}",
                measured[longer][key] / base if base else None,
                BOUND_RATIO,
                "at_most",
                "a worker's clone of a bare lineage remote and `dvc pull validate merge` from a "
                f"local DVC remote, on P11's synthetic history of {history_bench.PHOTOS}-photo "
                "batches; the kept cache is the one the fresh pull filled, one real batch "
                "earlier. One run each.",
            )
        )


def run(size: Size, work: Path, results: Results) -> None:
    histories = HISTORIES.get(size.name, HISTORIES["full"])
    print(f"P15: a worker's per-batch pull after {' and '.join(map(str, histories))} batches")
    base = work / "p15"
    workspace = history_bench.seed(base, history_bench.todays_layout)
    origin = base / "lineage.git"
    git(["init", "--quiet", "--bare", "--initial-branch", "main", str(origin)], base)
    git(["remote", "add", "origin", str(origin)], workspace.root)
    measured: dict[int, dict[str, float]] = {}
    for batches in histories:
        measured[batches] = measure_history(workspace, origin, batches, base)
        for key, what, unit in SHOWN:
            value = measured[batches][key]
            shown = value / 1e6 if unit == "MB" else value
            results.measure("P15", f"after {batches:,} batches: {what}", shown, unit)
    _targets(measured, results)
    shutil.rmtree(base, ignore_errors=True)
