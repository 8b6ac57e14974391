"""Rows of a sweep (mean +- std over seeds) and verdicts on orderings between them.

Runs are seeds of one experiment only when every identifying field but the seed agrees
(:data:`GROUP_FIELDS`): a sweep over lr, data set, precision, budget or protocol keeps each
value in its own row, and the row's label names the values that differ within the sweep.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from residual_lab.results.loading import IDENTITY_FIELDS, Run
from residual_lab.results.reference import match_reference
from residual_lab.results.stats import ALPHA, MIN_SEEDS, TEST_NAME, welch

#: What makes two runs the same experiment: every identifying field except the seed.
GROUP_FIELDS = tuple(k for k in IDENTITY_FIELDS if k != "seed")
#: Fields the table shows in their own columns (the rest go into the row's label).
NET_FIELDS = ("run_name", "depth", "shortcut", "block", "norm")


@dataclass
class Row:
    """One experiment of the table: its completed runs' errors (%) and the paper's figure.

    Attributes:
        key: the :data:`GROUP_FIELDS` values shared by the runs.
        runs: the completed runs, one per seed.
        reference: the matching entry of the reference file, or None (plain nets, other
            data sets, the heldout protocol, ...).
        varying: the fields whose values differ within the sweep (what tells rows apart).
        duplicates: completed runs with the same fields and seed as one in ``runs`` (the same
            run found twice, e.g. a sweep and its exported records): listed, not counted.
    """

    key: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    varying: tuple[str, ...] = ()
    duplicates: list[Run] = field(default_factory=list)

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

    def cell(self, metric: str) -> str:
        """``mean ± std (n=3)``, ``mean (n=1)`` or ``–``."""
        v = self.values(metric)
        return fmt_mean_std(self.mean(metric), self.std(metric), n=len(v)) if v else "–"

    @property
    def params(self) -> int | None:
        return self.runs[0].summary.get("params") if self.runs else None

    @property
    def net(self) -> str:
        """``plain-56``, ``ResNet-56``, ``ResNet-164 (preact_bottleneck)``."""
        name = "plain" if self.key["shortcut"] == "none" else "ResNet"
        block = "" if self.key.get("block") in (None, "basic") else f" ({self.key['block']})"
        return f"{name}-{self.key['depth']}{block}"

    @property
    def label(self) -> str:
        """The differing values besides the net's own columns: ``lr=0.05, dataset=synthetic`` or ``–``."""
        shown = [k for k in self.varying if k not in NET_FIELDS]
        if "dataset" in shown and "data" in shown:  # the source's class says the same again
            shown.remove("data")
        parts = [f"{k}={self.key[k]}" for k in shown]
        return ", ".join(parts) or "–"

    @property
    def difference(self) -> float | None:
        """Our mean test error minus the paper's (percentage points; > 0: we are worse)."""
        ours = self.mean("test_error")
        if ours is None or self.reference is None:
            return None
        return ours - self.reference["compare"]


def _key(run: Run) -> tuple:
    return tuple(run.get(k) for k in GROUP_FIELDS)


def varying_fields(runs: Sequence[Run], *, completed_only: bool = True) -> tuple[str, ...]:
    """The :data:`GROUP_FIELDS` whose values differ among the completed runs (the errors
    table's label), or, ``completed_only=False``, among every run with a summary (what tells
    apart the runs that did not complete)."""
    pool = [r for r in runs if (r.status == "completed" if completed_only else r.summary)]
    return tuple(k for k in GROUP_FIELDS if len({repr(r.get(k)) for r in pool}) > 1)


def aggregate(runs: list[Run]) -> list[Row]:
    """Rows of completed runs grouped over seeds, plain nets first, then by depth.

    Two runs share a row only when every field of :data:`GROUP_FIELDS` agrees. Runs with any
    other status are left to the report's list of problems, never averaged in; a second
    completed run with a row's fields and seed is a duplicate, not another seed.
    """
    varying = varying_fields(runs)
    rows: dict[tuple, Row] = {}
    for run in runs:
        if run.status != "completed":
            continue
        key = _key(run)
        if key not in rows:
            fields = dict(zip(GROUP_FIELDS, key))
            rows[key] = Row(key=fields, reference=match_reference(fields), varying=varying)
        row = rows[key]
        if any(r.get("seed") == run.get("seed") for r in row.runs):
            row.duplicates.append(run)
        else:
            row.runs.append(run)

    def order(row: Row) -> tuple:
        k = row.key
        return (k["shortcut"] != "none", str(k["block"]), str(k["shortcut"]), str(k["norm"]),
                int(k["width"] or 0), int(k["depth"] or 0), int(k["max_steps"] or 0),
                tuple(str(k[f]) for f in varying))

    return sorted(rows.values(), key=order)


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 2, n: int | None = None) -> str:
    """``6.97 ± 0.12``, ``6.97`` (one seed) or ``–``; with ``n``: ``6.97 ± 0.12 (n=3)``."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n is None else f"{text} (n={n})"


@dataclass(frozen=True)
class Ordering:
    """The verdict on ``a`` against ``b`` for one metric.

    Attributes:
        outcome: ``"lower"`` or ``"higher"`` (a's mean against b's, beyond seed spread),
            or ``"unresolved"`` (too few seeds, or p >= :data:`~residual_lab.results.stats.ALPHA`).
        text: the two numbers and the verdict, with the test and its p where one was run.
        p: the test's two-sided p-value, None when no test was run.
    """

    outcome: str
    text: str
    p: float | None = None


def compare(a: Row, b: Row, metric: str, names: tuple[str, str]) -> Ordering:
    """Is ``a``'s ``metric`` lower or higher than ``b``'s beyond seed spread?

    With fewer than :data:`~residual_lab.results.stats.MIN_SEEDS` seeds on a side there is
    no spread to test against: the two numbers and "not resolved". Otherwise Welch's t-test,
    two-sided at :data:`~residual_lab.results.stats.ALPHA`; the ordering is stated only when
    it rejects equal means.
    """
    va, vb = a.values(metric), b.values(metric)
    numbers = (f"{names[0]} {fmt_mean_std(a.mean(metric), a.std(metric), n=len(va))} vs "
               f"{names[1]} {fmt_mean_std(b.mean(metric), b.std(metric), n=len(vb))}")
    few = min(len(va), len(vb))
    if few < MIN_SEEDS:
        rule = f"a verdict needs >= {MIN_SEEDS} seeds per side"
        if few >= 2:  # the test can run: its p is shown, not acted on
            rule += f"; {TEST_NAME} at these seeds: p={welch(va, vb).p:.2g}"
        return Ordering("unresolved", f"{numbers}: {few} seed{'s' if few != 1 else ''}, not resolved ({rule})")
    test = welch(va, vb)
    stat = f"{TEST_NAME}, p={test.p:.2g}"
    if test.p >= ALPHA:
        return Ordering("unresolved", f"{numbers}: not resolved ({stat})", test.p)
    outcome = "lower" if test.t < 0 else "higher"
    return Ordering(outcome, f"{numbers}: {names[0]} {outcome} ({stat}, alpha {ALPHA})", test.p)
