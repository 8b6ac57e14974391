"""Per-net rows (mean +- std over seeds) for a Table-6-like comparison with the paper."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from residual_lab.results.loading import Run
from residual_lab.results.reference import match_reference

#: What makes two runs the same experiment (seeds are averaged over, everything else splits rows).
GROUP_KEYS = ("run_name", "depth", "shortcut", "block", "width", "norm", "max_steps", "batch_size", "data")


@dataclass
class Row:
    """One net of the table: its completed runs' errors (%) and the paper's figure.

    Attributes:
        key: the :data:`GROUP_KEYS` values shared by the runs.
        runs: the completed runs (one per seed).
        reference: the matching entry of the reference file, or None (plain nets, ...).
    """

    key: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    reference: dict[str, Any] | None = None

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, metric: str) -> list[float]:
        return [float(r.summary[metric]) for r in self.runs if r.summary.get(metric) is not None]

    def mean(self, metric: str) -> float | None:
        v = self.values(metric)
        return statistics.fmean(v) if v else None

    def std(self, metric: str) -> float | None:
        """Sample standard deviation (n - 1); None for fewer than two seeds."""
        v = self.values(metric)
        return statistics.stdev(v) if len(v) > 1 else None

    @property
    def params(self) -> int | None:
        return self.runs[0].summary.get("params") if self.runs else None

    @property
    def difference(self) -> float | None:
        """Our mean test error minus the paper's (percentage points; > 0: we are worse)."""
        ours = self.mean("test_error")
        if ours is None or self.reference is None:
            return None
        return ours - self.reference["compare"]


def _key(run: Run) -> tuple:
    return tuple(run.get(k) for k in GROUP_KEYS)


def aggregate(runs: list[Run]) -> list[Row]:
    """Rows of completed runs grouped over seeds, plain nets first, then by depth.

    Runs with any other status are left to the report's list of problems, never
    averaged in.
    """
    rows: dict[tuple, Row] = {}
    for run in runs:
        if run.status != "completed":
            continue
        key = _key(run)
        if key not in rows:
            fields = dict(zip(GROUP_KEYS, key))
            rows[key] = Row(key=fields, reference=match_reference(fields))
        rows[key].runs.append(run)

    def order(row: Row) -> tuple:
        k = row.key
        return (k["shortcut"] != "none", str(k["block"]), str(k["shortcut"]), str(k["norm"]),
                int(k["width"] or 0), int(k["depth"] or 0), int(k["max_steps"] or 0))

    return sorted(rows.values(), key=order)


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``6.97 ± 0.12``, ``6.97`` (one seed) or ``–``."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
