"""residual_lab.results.curve_stats (behind experiments/budget_cpu/calibrate.py): where one
net's curve overtakes another's, smoothing."""

import pytest

from residual_lab.results import curve_stats


def test_crossing_is_the_first_step_after_which_a_stays_at_or_below_b():
    steps = [9, 19, 29, 39, 49]
    # a dips below b at step 19, rises above it at 29, then stays below from 39 on
    assert curve_stats.crossing_step(steps, [5, 3, 6, 2, 1], [4, 4, 4, 4, 4]) == 40
    assert curve_stats.crossing_step(steps, [1, 1, 1, 1, 1], [2, 2, 2, 2, 2]) == 10
    assert curve_stats.crossing_step(steps, [1, 1, 1, 1, 3], [2, 2, 2, 2, 2]) is None


def test_smoothed_value_is_the_mean_of_the_last_windows_before_the_step():
    steps, values = [9, 19, 29, 39], [40.0, 30.0, 20.0, 10.0]
    assert curve_stats.value_at(steps, values, 40) == 10.0
    assert curve_stats.value_at(steps, values, 40, smooth=3) == pytest.approx(20.0)
    assert curve_stats.value_at(steps, values, 30, smooth=10) == pytest.approx(30.0)
    assert curve_stats.smoothed(values, 2) == [40.0, 35.0, 25.0, 15.0]
