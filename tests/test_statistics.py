from __future__ import annotations

import numpy as np
import pytest

from spatialgen.eval.metrics.statistics import bootstrap_interval, paired_difference_interval


def test_a_constant_rate_has_a_degenerate_interval_and_a_spread_one_brackets_its_mean() -> None:
    assert bootstrap_interval([0.5] * 20) == (0.5, 0.5)
    values = np.random.default_rng(1).random(200)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    # the normal approximation of the mean's 95% interval, to bootstrap accuracy
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert high - low == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)


def test_paired_differences_resample_prompts_together() -> None:
    a = np.linspace(0, 1, 50)
    difference, low, high = paired_difference_interval(a, a + 0.1)
    assert difference == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])
