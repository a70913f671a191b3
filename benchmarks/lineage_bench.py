"""P13: `contract check` and `mainstem diff` on a master of `flow_master_rows` (1M at full size).

In: a Size. Out: the wall time of replaying a stricter contract over every part of the master
(`master.replay.replay_master`), and of `mainstem diff` between the commit before and after one
batch of recent keys (`flow.master_diff.master_diff`, in a git + DVC repository whose master is
tracked with `dvc add`), each with the number of master parts it read.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import yaml

from benchmarks.data import KEY, BatchSpec
from benchmarks.merge_bench import build_master, empty_master
from benchmarks.results_table import Results, Target
from benchmarks.sizes import Size
from mainstem.commands import dvc, git
from mainstem.flow.lineage import AUTHOR
from mainstem.flow.master_diff import master_diff
from mainstem.master.merge import MasterSpec, refresh_master
from mainstem.master.replay import replay_master
from mainstem.params import load_params
from mainstem.validation.columnar import parquet_bytes
from mainstem.validation.contract import load_contract

ROOT = Path(__file__).resolve().parents[1]
MASTER = "data/master.parquet"
# A contract over the benchmark's 12 columns, stricter than the data it generates in places.
CONTRACT = {
    "contract": {"dataset": "bench", "version": 2, "primary_key": KEY},
    "schema": {
        "columns": {
            KEY: {"dtype": "int64", "nullable": False, "greater_than_or_equal_to": 0},
            "supplier": {"dtype": "str", "isin": ["north", "south", "east"]},
            "site": {"dtype": "str", "str_length": {"min_value": 7, "max_value": 7}},
            "weight_g": {"dtype": "float64", "in_range": {"min_value": 100.0, "max_value": 850}},
            "diameter_mm": {"dtype": "float64", "nullable": False},
            "sugar_brix": {"dtype": "float64", "in_range": {"min_value": 6.0, "max_value": 18.0}},
            "firmness_n": {"dtype": "float64", "less_than": 60.0},
            "lot": {"dtype": "int64"},
            "pieces": {"dtype": "int64", "greater_than": 1},
            "harvested_on": {
                "dtype": "datetime64[ns]",
                "in_range": {"min_value": "2022-01-01", "max_value": "2099-12-31"},
            },
            "inspected_at": {"dtype": "datetime64[ns]"},
            "passed": {"dtype": "bool"},
        },
        "strict": True,
    },
}


def _commit(repo: Path, message: str) -> str:
    """`dvc add` the master, record its hash where `mainstem diff` reads it, and commit."""
    dvc(["add", "--quiet", MASTER], repo)
    tracked = yaml.safe_load((repo / f"{MASTER}.dvc").read_text())["outs"][0]
    lock = {"schema": "2.0", "stages": {"merge": {"outs": [{"path": MASTER, **tracked}]}}}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    git(["add", "--all"], repo)
    git([*AUTHOR, "commit", "--quiet", "-m", message], repo)
    return git(["rev-parse", "HEAD"], repo).stdout.strip()


def run(size: Size, work: Path, results: Results) -> None:
    rows = size.flow_master_rows
    print(f"P13: contract check and diff on a {rows:,}-row master", flush=True)
    sized = replace(size, master_rows=rows, build_chunk=min(size.build_chunk, rows))
    layouts = build_master(sized, work / "p7")
    repo = work / "p7-repo"
    (repo / "data").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    git(["init", "--quiet", "--initial-branch", "main"], repo)
    dvc(["init", "--quiet"], repo)
    shutil.copytree(layouts.parts, repo / MASTER)
    before = _commit(repo, "master before the batch")

    spec = BatchSpec(7, rows, size.flow_batch_rows, spread="recent", recent_window=size.part_span)
    table = spec.table()
    reports = layouts.inbox.with_batch("batch-p7", parquet_bytes(table), table.num_rows)
    refresh_master(
        repo / MASTER,
        reports,
        layouts.inbox.path,
        MasterSpec(empty_master(size.part_span), table.schema),
    )
    after = _commit(repo, "master after the batch")

    contract_file = work / "contracts" / "bench" / "v2.yaml"
    contract_file.parent.mkdir(parents=True)
    contract_file.write_text(yaml.safe_dump(CONTRACT))
    contract = load_contract(contract_file)
    start = time.perf_counter()
    replay = replay_master(repo / MASTER, contract)
    checked = time.perf_counter() - start
    label = f"{rows:,}-row master"
    results.measure("P13", f"contract check on a {label}", checked)
    results.measure(
        "P13", f"contract check: parts read of {replay.parts_read}", replay.parts_read, ""
    )
    results.measure("P13", "contract check: rows it would reject", replay.rejected, "rows")

    params = load_params(repo)
    start = time.perf_counter()
    diff = master_diff(params, before, after)
    diffed = time.perf_counter() - start
    results.measure("P13", f"mainstem diff across one {size.flow_batch_rows:,}-row batch", diffed)
    results.measure(
        "P13", f"diff: part files read (parts: {diff.parts_total})", diff.parts_read, ""
    )
    results.measure(
        "P13", "diff: keys added + updated", len(diff.added) + len(diff.updated), "keys"
    )
    how = f"{label}, {diff.parts_total} parts of {size.part_span:,} keys; one run; wall seconds"
    results.target(
        Target("P13", "contract check on the master, seconds", checked, 10.0, "at_most", how)
    )
    results.target(
        Target("P13", "mainstem diff across one batch, seconds", diffed, 10.0, "at_most", how)
    )
    shutil.rmtree(work / "p7")
    shutil.rmtree(repo)
