"""Is an ordering between two nets beyond seed spread? Welch's t-test, without scipy.

Seed spread on CIFAR is large (ResNet-56 reruns range over 1.5 points at the paper's budget,
15 points at 500 steps), so the report states an ordering only when Welch's unequal-variance
t-test rejects equal means at :data:`ALPHA`, with at least :data:`MIN_SEEDS` seeds per side.
scipy is not a dependency: the t-distribution's tail comes from the regularised incomplete
beta function (Numerical Recipes, 3rd ed., sec. 6.4), checked against scipy's values in
tests/test_report.py.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

#: Two-sided significance level of every verdict.
ALPHA = 0.05
#: Fewest seeds per side before an ordering is stated: the project's rule (an ordering holds
#: over at least 3 seeds). At 2 a side the test is run and its p shown, not acted on: two
#: values estimate a spread poorly (at 500 CPU steps ResNet-56's seeds range over 15 points).
MIN_SEEDS = 3
TEST_NAME = "Welch's t-test"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


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
    """Welch's unequal-variance t-test; needs two values per side.

    Two sides without any spread (identical seeds, e.g. a deterministic run repeated) have
    no standard error: their difference is then exact (p = 0) or absent (p = 1).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs >= 2 values per side, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    se2 = va + vb
    if se2 == 0.0:
        return Welch(t=math.copysign(math.inf, diff) if diff else 0.0, df=float(len(a) + len(b) - 2),
                     p=0.0 if diff else 1.0)
    t = diff / math.sqrt(se2)
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return Welch(t=t, df=df, p=t_two_sided_p(t, df))
