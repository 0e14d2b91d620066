"""power_summary.interpolate_many (the vectorised bootstrap of n_for_power) against a plain,
one-draw-at-a-time statement of the rule (the implementation it replaced)."""

import math

import numpy as np
import pytest
from scipy import stats

from helpers import power_summary


def _reference(sizes, power, n_ok, target=0.8, alpha=0.05):
    """interpolate_n written out scalar by scalar, with scipy.stats.norm.ppf."""
    zt, za = stats.norm.ppf(target), stats.norm.ppf(1 - alpha / 2)

    def probit(p, n):
        lo = 0.5 / max(n, 1)
        return float(stats.norm.ppf(np.clip(p, lo, 1 - lo)))

    def through(i):
        delta = (probit(power[i], n_ok[i]) + za) / math.sqrt(sizes[i])
        return float(((zt + za) / delta) ** 2) if delta > 0 else np.nan

    if np.isnan(power).any():
        return np.nan, "not estimable", -1, -1
    if power[0] >= target:
        n = through(0)
        return n, ("extrapolated below smallest N" if np.isfinite(n) else "not estimable"), -1, int(sizes[0])
    for i in range(1, len(sizes)):
        if power[i] >= target:
            z0, z1 = probit(power[i - 1], n_ok[i - 1]), probit(power[i], n_ok[i])
            s0, s1 = math.sqrt(sizes[i - 1]), math.sqrt(sizes[i])
            frac = (zt - z0) / (z1 - z0) if z1 > z0 else 1.0
            return float((s0 + frac * (s1 - s0)) ** 2), "interpolated", int(sizes[i - 1]), int(sizes[i])
    n = through(len(sizes) - 1)
    return n, ("extrapolated above largest N" if np.isfinite(n) else "not estimable"), int(sizes[-1]), -1


def _cases(seed=1, n=3000):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        k = int(rng.integers(1, 5))
        sizes = np.sort(rng.choice([30, 60, 116, 200, 400, 800], size=k, replace=False))
        n_ok = rng.integers(0, 500, size=k)
        if rng.random() < 0.6:
            power = np.sort(rng.uniform(0, 1, size=k))
        else:  # edges: 0 and 1 (clipped), exactly the target, NaN, non-monotone curves
            power = rng.choice([0.0, 0.05, 0.5, 0.79, 0.8, 0.81, 1.0, np.nan], size=k)
        yield sizes, power, n_ok


def test_vectorised_rule_equals_the_scalar_rule():
    statuses = set()
    for sizes, power, n_ok in _cases():
        want = _reference(sizes, power, n_ok)
        got = power_summary.interpolate_n(sizes, power, n_ok)
        statuses.add(want[1])
        assert got[1:] == want[1:], (sizes, power, n_ok)
        if np.isnan(want[0]):
            assert np.isnan(got[0])
        else:
            assert got[0] == pytest.approx(want[0], rel=1e-12)
    assert statuses == set(power_summary.STATUSES)  # every branch was exercised


def test_many_draws_at_once_equal_each_draw_alone():
    rng = np.random.default_rng(7)
    sizes, n_ok = np.array([60, 116, 200, 400]), np.array([400, 399, 400, 400])
    draws = rng.binomial(n_ok, [0.3, 0.55, 0.78, 0.97], size=(500, 4)) / n_ok
    n, status, lo, hi = power_summary.interpolate_many(sizes, draws, n_ok)
    for i in range(0, 500, 37):
        one = power_summary.interpolate_n(sizes, draws[i], n_ok)
        assert (power_summary.STATUSES[status[i]], lo[i], hi[i]) == one[1:]
        assert n[i] == one[0] or (np.isnan(n[i]) and np.isnan(one[0]))
