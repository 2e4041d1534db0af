"""The report's paired tests equal scipy's on the same data, and no p-value is ever 0."""

import numpy as np
import pytest
from scipy import stats

from dorl.report.significance import auto_resamples, paired_p, sign_flip


def _scipy_sign_flip(a, b, n_resamples):
    def mean_diff(x, y, axis):
        return np.mean(x - y, axis=axis)

    return stats.permutation_test(
        (a, b), mean_diff, permutation_type="samples", vectorized=True, n_resamples=n_resamples, random_state=0
    ).pvalue


@pytest.mark.parametrize("seed", range(4))
def test_exact_sign_flip_equals_scipy(seed):
    """Few nonzero differences: every sign vector is enumerated, and p is scipy's exact p (scipy flips the zeros
    too, which moves nothing)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, 14)
    b = a - rng.normal(0.15, 0.3, 14)
    b[:3] = a[:3]  # three ties: 11 nonzero differences, 2^11 sign vectors
    got = paired_p(a, b, "sign_flip", resamples=10_000, seed=0)
    assert got["exact"]
    assert got["p_value"] == pytest.approx(_scipy_sign_flip(a, b, np.inf), rel=1e-12)


def test_monte_carlo_sign_flip_agrees_with_scipy_and_counts_the_observed():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, 200)
    b = a - rng.normal(0.02, 0.2, 200)
    got = paired_p(a, b, "sign_flip", resamples=50_000, seed=1)
    assert not got["exact"]
    want = _scipy_sign_flip(a, b, 50_000)
    se = np.sqrt(want * (1 - want) / 50_000)
    assert abs(got["p_value"] - want) < 5 * se + 1e-4, (got, want)


@pytest.mark.parametrize("test", ["sign_flip", "bootstrap"])
def test_p_is_never_below_one_over_resamples_plus_one(test):
    """The audit's finding: 1,000 bootstrap resamples reported p = 0 for clear differences. A resampling test's p
    is at least 1/(B+1): the observed statistic is one of the B+1."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 0.9, 200)
    b = a - 0.3 - rng.uniform(0, 0.01, 200)  # every difference positive: no resample is as extreme
    got = paired_p(a, b, test, resamples=999, seed=0)
    assert got["p_value"] == pytest.approx(1 / 1000)


def test_t_test_is_scipys():
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    assert paired_p(a, b, "t", resamples=1, seed=0)["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_no_difference_is_p_one():
    a = np.linspace(0, 1, 30)
    for test in ("sign_flip", "t", "bootstrap"):
        assert paired_p(a, a.copy(), test, resamples=100, seed=0)["p_value"] == 1.0


def test_exact_and_monte_carlo_meet():
    """The same 16 differences: exact (2^16 <= B) and Monte Carlo (B < 2^16) give the same p within its error."""
    rng = np.random.default_rng(9)
    d = rng.normal(0.1, 0.3, 16)
    exact = sign_flip(d, resamples=2**16, seed=0)
    mc = sign_flip(d, resamples=2**16 - 1, seed=0)
    assert exact["exact"] and not mc["exact"]
    assert abs(exact["p_value"] - mc["p_value"]) < 5 * np.sqrt(exact["p_value"] / 2**16) + 1e-4


@pytest.mark.parametrize("family", [1, 16, 60, 500])
def test_auto_resamples_keep_the_smallest_p_below_alpha_over_the_family(family):
    b = auto_resamples(family, 0.05)
    assert b >= 10_000 and family / (b + 1) <= 0.05 / 20
    assert auto_resamples(family, 0.05) <= max(10_000, 20 * family / 0.05)
