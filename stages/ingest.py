"""Stage `ingest`: pack the claimed batch from the drop folder into data/raw/batch.tar."""

from mainstem import crashpoints
from mainstem.console import run_entry
from mainstem.intake.ingest import ingest_claimed
from mainstem.intake.raw_store import ensure_pack
from mainstem.params import load_params


def main() -> None:
    params = load_params()
    ingest_claimed(params.ingest)
    ensure_pack(params.ingest.raw_dir)
    crashpoints.reach("stage ingest done")


if __name__ == "__main__":
    run_entry(main, "ingest")
