"""Stage `train`: train, log and register the declared model when a train request asks for it.

The stage depends on the request file, not on the master, so new batches never make it stale:
training happens when the retrain policy (or a person) writes a request. The contract, which the
stage reads for the key and to check the declared features, is reached the same way: the merge
stage depends on it, so a contract switch re-runs merge and leaves the model as it was trained.
`{}` means no request, and the stage then writes an empty model folder and `{"trained": false}`,
the same every time. A request is served once: running the stage again on it (`dvc repro
--force train`) finds the training run tagged with the request's id, restores its model and
writes the same metrics.
"""

from mainstem.console import run_entry
from mainstem.durable import write_json
from mainstem.params import load_params
from mainstem.training.job import run_requested_training


def main() -> None:
    params = load_params()
    write_json(params.train.metrics_file, run_requested_training(params))


if __name__ == "__main__":
    run_entry(main, "train")
