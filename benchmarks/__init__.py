"""Benchmarks for issue 6: per-batch cost that stays flat as the master grows.

`python -m benchmarks` (or `make bench`) generates its data deterministically, measures mainstem
and every baseline side by side in one run, and writes `results.md` and `results.json` to
`benchmarks/results/`. `--size tiny` runs the same code on small data in under a minute; the tests
use it to prove the benchmark still works. Timings live here and are never asserted in tests.
"""
