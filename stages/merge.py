"""Stage `merge`: upsert every validated batch into the master dataset; write its metrics."""

from mainstem import crashpoints
from mainstem.console import run_entry
from mainstem.durable import write_json
from mainstem.master.merge import update_master
from mainstem.master.metrics import master_metrics
from mainstem.params import load_params
from mainstem.validation.contract import load_contract


def main() -> None:
    params = load_params()
    contract = load_contract(params.validate.contract_path, check_schema=False)
    manifest = update_master(params, contract)
    write_json(params.merge.metrics_file, master_metrics(manifest))
    crashpoints.reach("stage merge done")


if __name__ == "__main__":
    run_entry(main, "merge")
