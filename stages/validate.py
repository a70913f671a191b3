"""Stage `validate`: check each new raw batch (every one under a new contract or code) against the
active contract, measure its drift from the production model's training data; write metrics."""

from mainstem import crashpoints
from mainstem.console import run_entry
from mainstem.durable import write_json
from mainstem.params import load_params
from mainstem.validation.contract import load_contract
from mainstem.validation.drift_store import drift_meter
from mainstem.validation.metrics import validation_metrics
from mainstem.validation.store import update_validated


def main() -> None:
    params = load_params()
    contract = load_contract(params.validate.contract_path)
    report, record = update_validated(params, contract, drift_meter(params, contract))
    totals = record.totals if record else {}
    write_json(params.validate.metrics_file, validation_metrics(contract.ref, totals, report))
    crashpoints.reach("stage validate done")


if __name__ == "__main__":
    run_entry(main, "validate")
