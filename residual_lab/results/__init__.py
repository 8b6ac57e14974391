"""Reading finished (or half-finished) runs, sweeps and run records: shared by the report and notebooks.

Measuring a net (probes) lives elsewhere; this package only reads what runs left behind.
"""

from residual_lab.results.loading import Run, find_runs, load_scalars
from residual_lab.results.reference import load_reference, match_reference
from residual_lab.results.tables import Row, aggregate, compare

__all__ = ["Run", "Row", "aggregate", "compare", "find_runs", "load_reference",
           "load_scalars", "match_reference"]
