"""The master dataset: key-range Parquet parts, the manifest, and the merge that upserts batches."""
