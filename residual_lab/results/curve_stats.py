"""Reading training curves against steps: a smoothed value at a step, the first step below a
level, and the step from which one net's curve stays below another's.

A curve is what a run logs every ``trainer.log_every_n_steps``: ``steps`` (the last step of
each logged window) and one value per window (e.g. the training error of that window's
batches, in %). experiments/budget_cpu/calibrate.py uses these to choose the CPU budget:
where ResNet-56 overtakes ResNet-20 (He et al. 2015 Fig. 6), and when a net leaves chance.
"""

from __future__ import annotations

import statistics


def first_below(steps: list[int], values: list[float], level: float) -> int | None:
    """The step after the first logged window below ``level`` (the window ends at ``step``)."""
    return next((s + 1 for s, v in zip(steps, values) if v < level), None)


def value_at(steps: list[int], values: list[float], step: int, smooth: int = 1) -> float | None:
    """The mean of the last ``smooth`` logged values at or before ``step`` (windows ending there)."""
    before = [v for s, v in zip(steps, values) if s < step]
    return statistics.mean(before[-smooth:]) if before else None


def smoothed(values: list[float], smooth: int) -> list[float]:
    """Trailing mean over ``smooth`` logged windows (fewer at the start of the run)."""
    return [statistics.mean(values[max(0, i - smooth + 1): i + 1]) for i in range(len(values))]


def crossing_step(steps: list[int], a: list[float], b: list[float]) -> int | None:
    """The first logged step from which ``a <= b`` holds at every later logged step, else None.

    ``a`` and ``b`` are curves logged at the same ``steps``; the step is the end of the
    logged window (``step + 1`` optimizer steps done).
    """
    crossing = None
    for step, x, y in zip(steps, a, b):
        if x > y:
            crossing = None
        elif crossing is None:
            crossing = step + 1
    return crossing


def seed_mean(rows: list[tuple[int, list[int], list[float]]], smooth: int) -> dict[int, tuple[float, float]]:
    """step -> (mean, sample std or 0 for one seed) of the smoothed curves, at the steps every
    seed logged."""
    curves = [dict(zip(s, smoothed(v, smooth))) for _, s, v in rows]
    common = sorted(set.intersection(*(set(c) for c in curves)))
    return {step: (statistics.mean(c[step] for c in curves),
                   statistics.stdev(c[step] for c in curves) if len(curves) > 1 else 0.0) for step in common}
