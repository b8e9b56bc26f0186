"""Uncertainty of a measured rate: percentile bootstrap over prompts.

Images of one prompt share its difficulty, so they are not independent draws: the unit of
resampling is the prompt (all its seeds together), as the project's reporting rule asks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_interval(
    per_prompt: Sequence[float] | np.ndarray, n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``per_prompt`` (one value per prompt, e.g. its hit rate)."""
    values = np.asarray(per_prompt, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"per_prompt must be a non-empty 1-D sequence, got shape {values.shape}")
    return bootstrap_ratio_interval(values, np.ones_like(values), n_resamples, level, seed)


def bootstrap_ratio_interval(
    numerators: Sequence[float] | np.ndarray,
    denominators: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``sum(numerators) / sum(denominators)``, resampling prompts whole.

    For rates whose prompts weigh differently (objects found / objects named, where a prompt names 1-3):
    each resample keeps a prompt's numerator and denominator together. With unit denominators it is the
    interval of the mean.
    """
    top, bottom = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    if top.ndim != 1 or len(top) == 0 or top.shape != bottom.shape:
        raise ValueError(f"need two non-empty 1-D sequences of one length, got shapes {top.shape} and {bottom.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not bottom.sum() > 0:
        raise ValueError("the denominators sum to zero: the ratio is undefined (e.g. VISOR_cond with no pair found)")
    picks = np.random.default_rng(seed).integers(0, len(top), size=(n_resamples, len(top)))
    below = bottom[picks].sum(axis=1)
    # a resample without any denominator (no prompt where both objects were found) has no ratio: it is left out,
    # not counted as 0
    ratios = top[picks].sum(axis=1)[below > 0] / below[below > 0]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference_interval(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``b - a`` over the same prompts and its bootstrap interval: (difference, low, high)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same prompts, got shapes {a.shape} and {b.shape}")
    low, high = bootstrap_interval(b - a, n_resamples, level, seed)
    return float((b - a).mean()), low, high
