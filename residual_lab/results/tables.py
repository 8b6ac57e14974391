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
from residual_lab.results.stats import (ADJUSTMENT, ALPHA, MIN_SEEDS, TEST_NAME, depth_trend, holm,
                                        slope_difference, welch)

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


@dataclass
class Ordering:
    """One test of the report's family: ``a`` against ``b`` (or a depth trend), before and after
    the family's adjustment (:func:`adjust`).

    Attributes:
        numbers: the two sides' means ± std (n), or the trend's slope and runs.
        p: the test's raw two-sided p, None when no test could run (one seed a side).
        tested: whether it counts as a test of the family (>= MIN_SEEDS seeds a side): a 2-seed
            p is shown for information, neither adjusted nor acted on.
        direction: ``"lower"``/``"higher"`` by the sign of the difference (a's mean against
            b's; a trend: deeper against shallower).
        reason: why there is no verdict whatever the p (too few seeds), or None.
        adjusted: Holm-adjusted p once :func:`adjust` has seen the whole family.
        family: the number of tests in that family.
    """

    numbers: str
    p: float | None = None
    tested: bool = False
    direction: str | None = None
    reason: str | None = None
    subject: str = ""
    adjusted: float | None = None
    family: int = 0
    test_name: str = TEST_NAME
    seeds_note: str = ""
    #: How the verdict reads, when "lower"/"higher" would not (a gap "shrinks"/"grows").
    words: dict[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """``"lower"``/``"higher"`` beyond seed spread after adjustment, else ``"unresolved"``."""
        if self.tested and self.adjusted is not None and self.adjusted < ALPHA and self.direction:
            return self.direction
        return "unresolved"

    @property
    def text(self) -> str:
        """The numbers, then the verdict with raw and adjusted p, or *not resolved* and why."""
        if self.reason:
            return f"{self.numbers}: {self.seeds_note}not resolved ({self.reason})"
        stat = f"{self.test_name}, p={self.p:.2g}, {ADJUSTMENT}-adjusted p={self.adjusted:.2g} over {self.family} test{'s' if self.family != 1 else ''}"
        if self.outcome == "unresolved":
            return f"{self.numbers}: not resolved ({stat})"
        return f"{self.numbers}: {self.subject} {self.words.get(self.outcome, self.outcome)} ({stat}, alpha {ALPHA})"


def compare(a: Row, b: Row, metric: str, names: tuple[str, str]) -> Ordering:
    """Is ``a``'s ``metric`` lower or higher than ``b``'s beyond seed spread? (:func:`compare_samples`)"""
    va, vb = a.values(metric), b.values(metric)
    numbers = (f"{names[0]} {fmt_mean_std(a.mean(metric), a.std(metric), n=len(va))} vs "
               f"{names[1]} {fmt_mean_std(b.mean(metric), b.std(metric), n=len(vb))}")
    return compare_samples(va, vb, numbers, names[0])


def compare_samples(va: Sequence[float], vb: Sequence[float], numbers: str, subject: str) -> Ordering:
    """Is the mean of ``va`` (one value per seed) lower or higher than ``vb``'s beyond seed spread?

    With fewer than :data:`~residual_lab.results.stats.MIN_SEEDS` seeds on a side there is
    no spread to test against: the numbers and "not resolved" (at 2 a side Welch's p is
    shown, not acted on). Otherwise Welch's t-test, two-sided; the verdict waits for the
    report's :func:`adjust` over all its tests.
    """
    few = min(len(va), len(vb))
    if few < MIN_SEEDS:
        rule = f"a verdict needs >= {MIN_SEEDS} seeds per side"
        p = None
        if few >= 2:  # the test can run: its p is shown, not acted on
            p = welch(va, vb).p
            rule += f"; {TEST_NAME} at these seeds: p={p:.2g}, not adjusted"
        return Ordering(numbers=numbers, p=p, reason=rule, subject=subject,
                        seeds_note=f"{few} seed{'s' if few != 1 else ''}, ")
    test = welch(va, vb)
    return Ordering(numbers=numbers, p=test.p, tested=True, direction="lower" if test.t < 0 else "higher",
                    subject=subject)


def trend(rows: Sequence[Row], metric: str, name: str) -> Ordering:
    """The statistic regressed on depth across ``rows`` (one net family and shortcut, several
    depths): the slope in points per 10 layers, its p, the verdict after :func:`adjust`.
    Needs >= :data:`MIN_SEEDS` seeds at every depth, like an ordering."""
    depths = sorted(int(r.key["depth"]) for r in rows)
    xs = [float(r.key["depth"]) for r in rows for _ in r.values(metric)]
    ys = [v for r in rows for v in r.values(metric)]
    few = min(len(r.values(metric)) for r in rows)
    span = f"{name}, depth {depths[0]}-{depths[-1]} ({len(depths)} depths, {len(ys)} runs)"
    if few < MIN_SEEDS:
        return Ordering(numbers=f"{span}", reason=f"a trend needs >= {MIN_SEEDS} seeds at every depth, the "
                                                  f"fewest here is {few}")
    fit = depth_trend(xs, ys)
    numbers = f"{span}: {fit.slope * 10:+.2f} points per 10 layers"
    return Ordering(numbers=numbers, p=fit.p, tested=True, direction="higher" if fit.slope > 0 else "lower",
                    subject="deeper", test_name="least-squares slope on depth")


def budget_ladders(rows: Sequence[Row]) -> dict[tuple, dict[tuple[str, int], dict[int, Row]]]:
    """Rows that agree on every field but the net (depth, shortcut) and ``trainer.max_steps``:
    ``{the other fields: {(shortcut, depth): {max_steps: row}}}``, only where two budgets or
    more ran. The report's (iv) and its budget figure both read these."""
    out: dict[tuple, dict[tuple[str, int], dict[int, Row]]] = {}
    for row in rows:
        steps, depth = row.key.get("max_steps"), row.key.get("depth")
        if steps is None or depth is None:
            continue
        rest = tuple((k, v) for k, v in row.key.items() if k not in ("run_name", "depth", "shortcut", "max_steps"))
        out.setdefault(rest, {}).setdefault((str(row.key["shortcut"]), int(depth)), {})[int(steps)] = row
    return {rest: nets for rest, nets in out.items() if len({s for by in nets.values() for s in by}) >= 2}


def fitted_budgets(deep: dict[int, Row], shallow: dict[int, Row], metric: str) -> list[int]:
    """The budgets both nets ran at with >= :data:`MIN_SEEDS` seeds of each: the rungs the
    gap-against-budget test fits (a rung still running waits outside it)."""
    return [s for s in sorted(set(deep) & set(shallow))
            if min(len(deep[s].values(metric)), len(shallow[s].values(metric))) >= MIN_SEEDS]


def budget_gap(deep: dict[int, Row], shallow: dict[int, Row], metric: str, name: str) -> Ordering:
    """Does the deeper-minus-shallower gap shrink or grow with the budget? ``deep`` and
    ``shallow`` map trainer.max_steps to the rows of two nets that agree on everything else;
    the difference of their least-squares slopes on log2(steps) over every seed of every
    shared budget (:func:`~residual_lab.results.stats.slope_difference`), in points per
    doubling of the budget, its verdict after :func:`adjust`. Only budgets with >=
    :data:`MIN_SEEDS` seeds of both nets enter the fit, like an ordering's sides; a rung still
    running is named beside it, so it neither counts early nor erases the complete rungs' verdict.
    Needs >= 2 such budgets."""
    shared = sorted(set(deep) & set(shallow))

    def seeds(s: int) -> int:
        return min(len(deep[s].values(metric)), len(shallow[s].values(metric)))

    def gaps(budgets: list[int]) -> str:
        means = [(deep[s].mean(metric), shallow[s].mean(metric)) for s in budgets]
        return ", ".join(f"{d - b:+.2f} at {s}" if d is not None and b is not None else f"– at {s}"
                         for s, (d, b) in zip(budgets, means))

    steps = fitted_budgets(deep, shallow, metric)
    if len(steps) < 2:
        runs = sum(len(r.values(metric)) for s in shared for r in (deep[s], shallow[s]))
        return Ordering(numbers=f"{name}, {len(shared)} budgets, {runs} runs: gap {gaps(shared)} steps",
                        reason=f"a gap against budget needs >= 2 budgets with >= {MIN_SEEDS} seeds of both nets; "
                               f"here {len(steps)} of {len(shared)} budget(s), fewest seeds "
                               f"{min(map(seeds, shared), default=0)}")
    waiting = [s for s in shared if s not in steps]
    runs = sum(len(r.values(metric)) for s in steps for r in (deep[s], shallow[s]))
    span = f"{name}, {len(steps)} budgets, {runs} runs: gap {gaps(steps)} steps"
    if waiting:
        span += (f" (not in the fit until both nets have {MIN_SEEDS} seeds there: {gaps(waiting)}, fewest seeds "
                 f"{min(map(seeds, waiting))})")
    xs = {s: math.log2(s) for s in steps}
    fit = slope_difference([xs[s] for s in steps for _ in deep[s].values(metric)],
                           [v for s in steps for v in deep[s].values(metric)],
                           [xs[s] for s in steps for _ in shallow[s].values(metric)],
                           [v for s in steps for v in shallow[s].values(metric)])
    return Ordering(numbers=f"{span}: {fit.difference:+.2f} points per doubling of the budget", p=fit.p,
                    tested=True, direction="higher" if fit.difference > 0 else "lower", subject="the gap",
                    test_name="difference of least-squares slopes on log2(steps)",
                    words={"lower": "shrinks", "higher": "grows"})


def adjust(orderings: Sequence[Ordering]) -> None:
    """Holm's adjustment over every test in ``orderings`` (the report's family), in place."""
    tested = [o for o in orderings if o.tested]
    for o, adjusted in zip(tested, holm([o.p for o in tested])):
        o.adjusted, o.family = adjusted, len(tested)
