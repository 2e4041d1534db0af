"""Intervals and corrections of the report: bootstrap intervals over examples (of a mean and of a paired
difference), the Student-t interval over seeds, and Holm's correction across the comparisons. The paired tests'
p-values are `dorl.report.significance`'s."""

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


def paired_interval(values, baseline, n_boot: int, confidence: float, seed: int) -> dict:
    """Paired bootstrap of mean(values - baseline) over the same examples: the difference and its percentile
    interval (the p-value is `dorl.report.significance`'s)."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same examples: {a.shape} vs {b.shape}")
    diff = a - b
    means = _resample_means(diff, n_boot, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    return {
        "delta": float(diff.mean()),
        "delta_low": float(np.quantile(means, alpha)),
        "delta_high": float(np.quantile(means, 1 - alpha)),
    }


def seed_interval(seed_means, confidence: float) -> tuple[float, float]:
    """Student-t interval (S - 1 degrees of freedom) of the mean over S seeds, each seed's value its mean over
    examples (a score or a gain): the seeds as a random sample of training runs. NaN under 2 seeds."""
    from scipy import stats

    x = np.asarray(seed_means, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error across all comparisons); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
