"""Bootstrap statistics over examples: confidence intervals and the paired test against a baseline."""

from __future__ import annotations

import numpy as np


def _resample_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(axis=1)


def mean_ci(values, n_boot: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    means = _resample_means(values, n_boot, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_test(values, baseline, n_boot: int, confidence: float, seed: int) -> dict:
    """Paired bootstrap of mean(values - baseline) over the same examples.

    Returns the difference, its interval and a two-sided p-value: twice the share of resampled
    differences on the far side of zero (capped at 1).
    """
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same examples: {a.shape} vs {b.shape}")
    diff = a - b
    means = _resample_means(diff, n_boot, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    if np.all(diff == 0):
        p = 1.0
    else:
        p = float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
    return {
        "delta": float(diff.mean()),
        "delta_low": float(np.quantile(means, alpha)),
        "delta_high": float(np.quantile(means, 1 - alpha)),
        "p_value": p,
    }
