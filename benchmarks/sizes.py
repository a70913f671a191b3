"""How big each benchmark runs: the issue's sizes (`full`) and a quick smoke-test size (`tiny`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    # P1: one batch into a big master
    master_rows: int
    batch_rows: int
    part_span: int
    build_chunk: int
    repeats: int
    pandas_baseline: bool
    # P2, P3: many batches into a growing master, each versioned with DVC
    growth_seed_rows: int
    growth_batches: int
    growth_batch_rows: int
    # P4: image canonicalization
    images: int
    image_side: int
    # P5: one batch through the whole pipeline
    flow_master_rows: int
    flow_batch_rows: int
    flow_images: int
    flow_image_side: int
    # P6: the retrain decision
    mlflow_runs: int
    # P14: the pipeline page
    pipeline_batches: int
    # P11: one more batch after histories of these many batches (MAINSTEM_BENCH_HISTORY wins)
    history_batches: tuple[int, ...] = (10, 1_000, 10_000)
    # P7: batches one after another through the real scheduler, each with rows and photos
    latency_batches: int = 10
    latency_rows: int = 100
    latency_images: int = 10
    # P8: a queue of this many batches of these many rows, drained through the real scheduler
    drain_batches: int = 100
    drain_rows: int = 100
    # P10: the size delta-rs aims its files at in the tuned Delta layout (about one part)
    delta_file_bytes: int = 4 << 20
    # P9: `mainstem process` runs on a small batch and on nothing, each
    fixed_cost_runs: int = 5


SIZES = {
    "full": Size(
        name="full",
        master_rows=10_000_000,
        batch_rows=100_000,
        part_span=100_000,
        build_chunk=1_000_000,
        repeats=3,
        pandas_baseline=True,
        growth_seed_rows=550_000,
        growth_batches=50,
        growth_batch_rows=100_000,
        images=400,
        image_side=640,
        flow_master_rows=1_000_000,
        flow_batch_rows=10_000,
        flow_images=200,
        flow_image_side=640,
        mlflow_runs=10_000,
        pipeline_batches=1_000,
    ),
    "tiny": Size(
        name="tiny",
        master_rows=20_000,
        batch_rows=2_000,
        part_span=2_000,
        build_chunk=10_000,
        repeats=1,
        pandas_baseline=True,
        growth_seed_rows=2_500,
        growth_batches=3,
        growth_batch_rows=1_000,
        images=20,
        image_side=96,
        flow_master_rows=2_000,
        flow_batch_rows=100,
        flow_images=5,
        flow_image_side=96,
        mlflow_runs=30,
        pipeline_batches=50,
        history_batches=(3, 10),
        latency_batches=2,
        drain_batches=2,
        delta_file_bytes=64 << 10,
        fixed_cost_runs=1,
    ),
}
