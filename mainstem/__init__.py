"""mainstem: dropped batches in, a validated and versioned master dataset out.

The package holds every decision the pipeline makes; `stages/` and `dags/` only call into it.
"""

__version__ = "0.1.0"
