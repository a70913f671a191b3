"""P9: the fixed cost of `mainstem process`, a 20-row batch against a run with nothing waiting.

In: a Size. Out: the wall time of `mainstem process` (the installed command, its own process, as
an operator runs it) on a 20-row batch with 20 images and on an empty drop folder, each the median
of `fixed_cost_runs` runs taken in turn in one workspace (git + DVC, a local DVC remote); the
difference is the target, the ratio is reported beside it. A first batch, not counted, warms the
workspace (bytecode caches, DVC's state database), as any workspace past its first batch is.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.commands import tool_env
from mainstem.flow.workspace import create_workspace, source_root
from mainstem.intake.submit import submit
from mainstem.local.samples import BatchSpec, make_batch
from mainstem.params import load_params

BATCH_ROWS = 20
BOUND_SECONDS = 3.0


@dataclass(frozen=True)
class Cost:
    """One run's wall time, and the CPU time of its whole process tree (less hurt by load)."""

    wall: float
    cpu: float


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def process_cost(root: Path) -> Cost:
    """What one `mainstem process` in `root` costs; it must end with exit status 0."""
    command = [sys.executable, "-m", "mainstem.cli", "process"]
    cpu, start = _children_cpu(), time.perf_counter()
    completed = subprocess.run(command, cwd=root, env=tool_env(), capture_output=True, text=True)
    cost = Cost(time.perf_counter() - start, _children_cpu() - cpu)
    if completed.returncode != 0:
        raise RuntimeError(f"`mainstem process` failed: {completed.stderr.strip()[-2000:]}")
    return cost


def deliver(root: Path, deliveries: Path, number: int) -> None:
    spec = BatchSpec(number, number * 1_000, BATCH_ROWS)
    folder = make_batch(deliveries / spec.name, spec)
    submit([folder], load_params(root).ingest.incoming_dir, spec.name)


def run(size: Size, work: Path, results: Results) -> None:
    print(f"P9: `mainstem process` on a {BATCH_ROWS}-row batch and with nothing waiting")
    root = create_workspace(work / "p9" / "workspace", source_root())
    deliveries = work / "p9" / "deliveries"
    deliver(root, deliveries, 1)
    process_cost(root)  # warm-up: not counted
    batch_runs, idle_runs = [], []
    for number in range(2, 2 + size.fixed_cost_runs):
        deliver(root, deliveries, number)
        results.sample_load()
        batch_runs.append(process_cost(root))
        idle_runs.append(process_cost(root))
    batch = statistics.median(c.wall for c in batch_runs)
    idle = statistics.median(c.wall for c in idle_runs)
    batch_cpu = statistics.median(c.cpu for c in batch_runs)
    idle_cpu = statistics.median(c.cpu for c in idle_runs)
    runs = f"median of {size.fixed_cost_runs}"
    results.measure("P9", f"mainstem process, {BATCH_ROWS}-row batch ({runs})", batch)
    results.measure("P9", f"mainstem process, nothing waiting ({runs})", idle)
    results.measure("P9", "worst batch run", max(c.wall for c in batch_runs))
    results.measure("P9", "batch ÷ nothing waiting, wall time", batch / idle, "ratio")
    results.measure("P9", f"CPU time of the batch run's processes ({runs})", batch_cpu)
    results.measure("P9", f"CPU time of the no-op run's processes ({runs})", idle_cpu)
    results.measure("P9", "batch minus no-op, CPU time", batch_cpu - idle_cpu)
    results.target(
        Target(
            "P9",
            f"mainstem process: {BATCH_ROWS}-row batch minus no-op, seconds",
            batch - idle,
            BOUND_SECONDS,
            "at_most",
            "`python -m mainstem.cli process` as a subprocess in a git + DVC workspace with a "
            f"local remote, {BATCH_ROWS} rows and {BATCH_ROWS} images per batch; batch and no-op "
            f"runs alternate, {runs} each, after one warm-up batch; no scheduler. CPU time is "
            "that of the whole process tree (getrusage of the children).",
            f"batch {batch:.2f} s, no-op {idle:.2f} s, ratio {batch / idle:.1f}; "
            f"CPU {batch_cpu:.2f} s against {idle_cpu:.2f} s",
        )
    )
