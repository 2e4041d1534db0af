"""Paired tests of a method against a reference on the same test examples, and how many resamples they need.

    p = paired_p(values, reference, test="sign_flip", resamples=B, seed=0)

In: per-example scores of the method and of the reference (the same examples, in the same order). Out: a two-sided
p-value that is never 0:

- `sign_flip` (the default): the paired permutation test of the mean difference. Under the null hypothesis each
  example's difference is as likely to have either sign, so the statistic T = sum(d) is compared with
  T* = sum(s * d) over sign vectors s. Exact (all 2^k sign vectors of the k nonzero differences; zeros do not
  move T) when 2^k <= B, as scipy.stats.permutation_test decides; otherwise B random sign vectors and
  p = (1 + #{|T*| >= |T|}) / (B + 1), which counts the observed T as one of the resamples, so p >= 1/(B + 1)
  (Phipson and Smyth 2010).
- `t`: the paired t-test (scipy.stats.ttest_rel): no resamples, assumes the mean difference is near normal
  (the central limit theorem on a few hundred examples).
- `bootstrap`: twice the share of resampled mean differences on the far side of zero, counted as
  (1 + 2 * min(#<=0, #>=0)) / (B + 1): floored at 1/(B + 1), never 0.

Hand-written rather than scipy.stats.permutation_test: that one draws B permutations of both samples (B x n x 2
floats at once) and reports the doubled one-sided p; this one draws signs in chunks and counts |T*| >= |T|. The
exact case equals scipy's; tests/report/test_significance.py checks both against scipy.

`auto_resamples(m, alpha)`: enough resamples that the smallest attainable p, 1/(B+1), times the family size m
(what Holm multiplies the smallest p by) is at most alpha/20: B + 1 >= 20 m / alpha, and at least 10,000.
"""

from __future__ import annotations

import math

import numpy as np

TESTS = ("sign_flip", "t", "bootstrap")
DESCRIPTION = {
    "sign_flip": "paired sign-flip permutation test of the mean difference (two-sided; exact when 2^k <= B for k "
    "nonzero differences, else B random sign vectors, p = (1 + #{|T*| >= |T|}) / (B + 1))",
    "t": "paired t-test (scipy.stats.ttest_rel, two-sided)",
    "bootstrap": "paired bootstrap of the mean difference (two-sided, p = (1 + 2 min(#<=0, #>=0)) / (B + 1))",
}
MIN_RESAMPLES = 10_000
FLOOR_FACTOR = 20  # m / (B + 1) <= alpha / FLOOR_FACTOR
_CHUNK = 4096  # sign vectors per matrix product


def auto_resamples(family: int, alpha: float) -> int:
    """The number of resamples for a family of `family` comparisons tested at level `alpha`."""
    return max(MIN_RESAMPLES, math.ceil(FLOOR_FACTOR * max(family, 1) / alpha) - 1)


def paired_p(values, reference, test: str, resamples: int, seed: int) -> dict:
    """{"p_value", "exact"}: the two-sided p-value of mean(values - reference) != 0 by `test`."""
    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same examples: {a.shape} vs {b.shape}")
    diff = a - b
    if not np.any(diff):
        return {"p_value": 1.0, "exact": True}  # no difference at all: every test says p = 1
    if test == "sign_flip":
        return sign_flip(diff, resamples, seed)
    if test == "t":
        from scipy import stats

        p = float(stats.ttest_rel(a, b).pvalue)
        if math.isnan(p):  # every difference the same nonzero value: no variance to scale by; the sign test's p
            return sign_flip(diff, resamples, seed)
        return {"p_value": p, "exact": True}
    if test == "bootstrap":
        return {"p_value": bootstrap_p(diff, resamples, seed), "exact": False}
    raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")


def sign_flip(diff, resamples: int, seed: int) -> dict:
    """The paired sign-flip permutation test of sum(diff) (see the module's docstring)."""
    d = np.asarray(diff, dtype=float)
    d = d[d != 0]
    k = len(d)
    observed = abs(d.sum())
    tol = 1e-12 * max(1.0, observed)  # sums in another order differ by rounding: count those as equal
    if k < 63 and 2**k <= resamples:
        hits = 0
        for start in range(0, 2**k, _CHUNK):
            codes = np.arange(start, min(start + _CHUNK, 2**k), dtype=np.int64)
            signs = ((codes[:, None] >> np.arange(k)) & 1) * 2 - 1
            hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
        return {"p_value": hits / 2**k, "exact": True}
    rng = np.random.default_rng(seed)
    hits, left = 0, resamples
    while left:
        n = min(_CHUNK, left)
        signs = rng.integers(0, 2, size=(n, k), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
        left -= n
    return {"p_value": (1 + hits) / (resamples + 1), "exact": False}


def bootstrap_p(diff, resamples: int, seed: int) -> float:
    d = np.asarray(diff, dtype=float)
    rng = np.random.default_rng(seed)
    below = above = 0
    left = resamples
    while left:
        n = min(_CHUNK, left)
        means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
        below, above = below + int(np.sum(means <= 0)), above + int(np.sum(means >= 0))
        left -= n
    return float(min(1.0, (1 + 2 * min(below, above)) / (resamples + 1)))
