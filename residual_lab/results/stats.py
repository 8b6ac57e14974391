"""The report's inference: Welch's t-test per ordering, a depth trend, and Holm's adjustment.

The rule (docs/reproducing.md, "How the report decides"), fixed before any data is seen:

- the statistic is the final weights' training error in eval mode on the whole training split
  (summary.json ``train_error_full``; :func:`registered_statistic`);
- each ordering is Welch's unequal-variance t-test, two-sided; each depth trend is the
  least-squares slope of the statistic on depth over every seed (:func:`depth_trend`); where
  the same pair of nets ran at several budgets, whether the deeper-minus-shallower gap changes
  with the budget is the difference of the two nets' least-squares slopes on log2(steps)
  (:func:`slope_difference`);
- every test a report makes is one family: Holm's step-down adjustment (:func:`holm`) keeps
  the chance of *any* false ordering in the report at :data:`ALPHA`. Holm rather than
  Benjamini-Hochberg because a report's orderings are read one by one as claims ("plain-56
  trains worse than plain-20"), so the error to bound is a single false claim (family-wise),
  not the share of false claims among many discoveries; it needs no independence between tests
  (the same runs enter several comparisons), and it is uniformly more powerful than Bonferroni;
- a verdict needs >= :data:`MIN_SEEDS` independent seeds a side and an adjusted p < ALPHA;
  anything else prints "not resolved" with the numbers. No paired tests: seeds are
  independent replicates (since the batch-order fix), not matched pairs.

scipy.stats does the tests; the adjustment is the textbook procedure (Holm 1979).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as _scipy

#: Two-sided family-wise significance level of every verdict.
ALPHA = 0.05
#: Fewest seeds per side before an ordering is stated: the project's rule (an ordering holds
#: over at least 3 seeds). At 2 a side the test is run and its p shown, not acted on: two
#: values estimate a spread poorly (at 500 CPU steps ResNet-56's seeds range over 15 points).
MIN_SEEDS = 3
TEST_NAME = "Welch's t-test"
ADJUSTMENT = "Holm"
#: The registered training-error statistic, and the one records before it existed carry.
REGISTERED, WINDOW = "train_error_full", "train_error"


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return float(2 * _scipy.t.sf(abs(t), df))


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of mean(a) - mean(b).

    Attributes:
        t: the t statistic (> 0: a's mean is higher).
        df: Welch-Satterthwaite degrees of freedom.
        p: two-sided p-value.
    """

    t: float
    df: float
    p: float


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's unequal-variance t-test (scipy's ``ttest_ind(equal_var=False)``); needs two
    values per side.

    Two sides without any spread (identical seeds, e.g. a deterministic run repeated) have
    no standard error: their difference is then exact (p = 0) or absent (p = 1).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs >= 2 values per side, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0.0:
        return Welch(t=math.copysign(math.inf, diff) if diff else 0.0, df=float(len(a) + len(b) - 2),
                     p=0.0 if diff else 1.0)
    result = _scipy.ttest_ind(a, b, equal_var=False)
    return Welch(t=float(result.statistic), df=float(result.df), p=float(result.pvalue))


@dataclass(frozen=True)
class Trend:
    """Least-squares line of a statistic against depth over every seed of every depth.

    Attributes:
        slope: change of the statistic per layer (percentage points per layer for errors).
        p: two-sided p of the slope's t-test (n - 2 degrees of freedom).
        n: runs in the fit.
    """

    slope: float
    p: float
    n: int


def depth_trend(depths: Sequence[float], values: Sequence[float]) -> Trend:
    """The statistic regressed on depth (scipy's ``linregress``): does it rise or fall with
    depth across all depths at once, rather than between neighbours? Needs two depths."""
    if len(set(depths)) < 2 or len(values) < 3:
        raise ValueError(f"a depth trend needs >= 2 depths and >= 3 runs, got {sorted(set(depths))}")
    if len(set(values)) == 1:
        return Trend(slope=0.0, p=1.0, n=len(values))
    fit = _scipy.linregress(depths, values)
    p = float(fit.pvalue) if math.isfinite(fit.pvalue) else 0.0  # a perfect line: exact
    return Trend(slope=float(fit.slope), p=p, n=len(values))


@dataclass(frozen=True)
class SlopeDifference:
    """Net a's least-squares slope on x minus net b's, with one pooled residual variance.

    Attributes:
        difference: slope_a - slope_b (for x = log2(steps): how many points the a-minus-b gap
            changes per doubling of the budget).
        p: two-sided p of its t-test (n - 4 degrees of freedom).
        n: runs in the two fits together.
    """

    difference: float
    p: float
    n: int


def _line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, list[float]]:
    """Least-squares line of y on x: (slope, Sxx, residuals)."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((v - mx) ** 2 for v in x)
    slope = sum((u - mx) * (v - my) for u, v in zip(x, y)) / sxx
    return slope, sxx, [v - my - slope * (u - mx) for u, v in zip(x, y)]


def slope_difference(xa: Sequence[float], ya: Sequence[float], xb: Sequence[float],
                     yb: Sequence[float]) -> SlopeDifference:
    """Does the gap between two nets change with x? The interaction term of the least-squares
    model ``y ~ net * x`` (each net its own intercept and slope): the difference of the two
    slopes, its standard error from the residual variance pooled over both fits (n - 4 degrees
    of freedom). The gap at one budget is a Welch comparison; this asks about all budgets at
    once, as the depth trend does about all depths. Needs two x values and two runs per net,
    and five runs in all."""
    if min(len(set(xa)), len(set(xb))) < 2 or len(ya) + len(yb) < 5:
        raise ValueError("a slope difference needs >= 2 budgets per net and >= 5 runs, got "
                         f"{sorted(set(xa))} and {sorted(set(xb))}")

    def fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
        slope, sxx, residuals = _line(x, y)
        return slope, sxx, sum(e**2 for e in residuals)

    (sa, sxx_a, rss_a), (sb, sxx_b, rss_b) = fit(xa, ya), fit(xb, yb)
    n = len(ya) + len(yb)
    diff, variance = sa - sb, (rss_a + rss_b) / (n - 4)
    if variance == 0.0:  # both fits exact: the difference has no error
        return SlopeDifference(difference=diff, p=0.0 if diff else 1.0, n=n)
    t = diff / math.sqrt(variance * (1 / sxx_a + 1 / sxx_b))
    return SlopeDifference(difference=diff, p=t_two_sided_p(t, n - 4), n=n)


def slope_difference_hc3(xa: Sequence[float], ya: Sequence[float], xb: Sequence[float],
                         yb: Sequence[float]) -> SlopeDifference:
    """:func:`slope_difference` with a heteroscedasticity-robust (HC3) standard error: a check
    on the registered test, never a verdict (no report prints it; experiments/ladder/robust_check.py
    does, labelled as an exploration).

    The pooled variance assumes every budget's seeds spread alike; a net near chance at the
    smallest budget spreads more. HC3 (MacKinnon and White 1985) weights each run's squared
    residual by its leverage instead. The interaction model is two separate line fits, so the
    variance of the slope difference is the sum of each fit's HC3 slope variance,
    sum((x_i - mean)^2 e_i^2 / (1 - h_i)^2) / Sxx^2 with h_i = 1/n + (x_i - mean)^2 / Sxx; the
    t-test keeps n - 4 degrees of freedom. Needs three budgets per net (at two, a run alone at a
    budget has leverage 1)."""
    def fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
        slope, sxx, residuals = _line(x, y)
        mx = statistics.fmean(x)
        meat = sum((u - mx) ** 2 * e**2 / (1 - 1 / len(x) - (u - mx) ** 2 / sxx) ** 2 for u, e in zip(x, residuals))
        return slope, meat / sxx**2

    if min(len(set(xa)), len(set(xb))) < 3:
        raise ValueError(f"an HC3 slope difference needs >= 3 budgets per net, got {sorted(set(xa))} and "
                         f"{sorted(set(xb))}")
    (sa, va), (sb, vb) = fit(xa, ya), fit(xb, yb)
    n = len(ya) + len(yb)
    if va + vb == 0.0:
        return SlopeDifference(difference=sa - sb, p=0.0 if sa != sb else 1.0, n=n)
    return SlopeDifference(difference=sa - sb, p=t_two_sided_p((sa - sb) / math.sqrt(va + vb), n - 4), n=n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order.

    Sort ascending; the i-th smallest (0-based) of m gets ``(m - i) * p``, made monotone
    (never below the one before it) and capped at 1. Rejecting where the adjusted p < alpha
    is Holm's procedure at family-wise level alpha.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
