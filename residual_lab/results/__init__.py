"""Reading finished (or half-finished) runs and sweeps: shared by the report and notebooks."""

from residual_lab.results.loading import Run, find_runs, load_scalars
from residual_lab.results.reference import load_reference, match_reference
from residual_lab.results.tables import Row, aggregate

__all__ = ["Run", "Row", "aggregate", "find_runs", "load_reference", "load_scalars", "match_reference"]
