from __future__ import annotations

import numpy as np
import pytest

from spatialgen.eval.metrics.statistics import bootstrap_interval, bootstrap_ratio_interval, paired_difference_interval


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


def test_a_ratio_interval_resamples_numerators_with_their_denominators() -> None:
    hits, named = np.array([1.0, 2.0, 3.0] * 20), np.array([1.0, 2.0, 3.0] * 20)
    assert bootstrap_ratio_interval(hits, named) == (1.0, 1.0)  # every prompt at rate 1: no spread at all
    rng = np.random.default_rng(2)
    named = rng.integers(1, 4, 300).astype(float)
    hits = rng.binomial(named.astype(int), 0.4).astype(float)
    low, high = bootstrap_ratio_interval(hits, named)
    assert low < hits.sum() / named.sum() < high and high - low < 0.15
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ratio_interval([1.0, 2.0], [1.0])


def test_resamples_without_a_denominator_are_undefined_not_zero() -> None:
    # VISOR_cond over prompts where both objects were found in one of three: the rate is 1 in every resample
    # that has a found pair; resamples without one have no rate (counting them as 0 would drag the interval down)
    assert bootstrap_ratio_interval([2.0, 0.0, 0.0], [2.0, 0.0, 0.0]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="undefined"):
        bootstrap_ratio_interval([0.0, 0.0], [0.0, 0.0])
