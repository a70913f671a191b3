"""Stage `ingest`: snapshot the claimed batch from the drop folder into data/raw/<batch_id>/."""

from mainstem import crashpoints
from mainstem.console import run_entry
from mainstem.intake.ingest import ingest_claimed
from mainstem.params import load_params


def main() -> None:
    params = load_params()
    params.ingest.raw_dir.mkdir(parents=True, exist_ok=True)
    ingest_claimed(params.ingest)
    crashpoints.reach("stage ingest done")


if __name__ == "__main__":
    run_entry(main, "ingest")
