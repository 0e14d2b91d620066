"""Prediction intervals for a replication (Patil, Peng & Leek, 2016), checked by simulating pairs of
studies that estimate the same quantity: about 95% of replications fall inside the interval."""

import numpy as np
import pytest
from scipy import stats

from helpers import consistency

R = 400  # pairs of studies per check: coverage .95 has MC SE .011


def _coverage(hits):
    return np.mean(hits)


def test_a_normal_estimate_falls_inside_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    se_o, se_r = 0.13, 0.2
    orig = rng.normal(0.4, se_o, R)
    rep = rng.normal(0.4, se_r, R)
    hits = [lo <= r <= hi for o, r in zip(orig, rep) for lo, hi in [consistency.estimate_pi(o, se_o, se_r)]]
    assert 0.92 <= _coverage(hits) <= 0.98


def test_a_percentage_and_a_mean_and_an_sd():
    rng = np.random.default_rng(2)
    p, n_o, n_r = 0.28, 82, 120
    po, pr = rng.binomial(n_o, p, R) / n_o, rng.binomial(n_r, p, R) / n_r
    hits = [lo <= 100 * b <= hi for a, b in zip(po, pr) for lo, hi in [consistency.proportion_pi(100 * a, n_o, n_r)]]
    assert 0.91 <= _coverage(hits) <= 0.98
    xo, xr = rng.normal(36.7, 11.3, (R, 116)), rng.normal(36.7, 11.3, (R, 60))
    hits = [lo <= b.mean() <= hi for a, b in zip(xo, xr)
            for lo, hi in [consistency.mean_pi(a.mean(), a.std(ddof=1), 116, 60)]]
    assert 0.92 <= _coverage(hits) <= 0.98
    hits = [lo <= b.std(ddof=1) <= hi for a, b in zip(xo, xr)
            for lo, hi in [consistency.sd_pi(a.std(ddof=1), 116, 60)]]
    assert 0.92 <= _coverage(hits) <= 0.98


def test_the_se_implied_by_a_p_value():
    assert consistency.se_from_p(0.44, 0.001) == pytest.approx(0.44 / stats.norm.isf(0.0005))


def _chi2(counts):
    counts = counts[counts.sum(1) > 0][:, counts.sum(0) > 0]
    return stats.chi2_contingency(counts, correction=False)[0]


@pytest.mark.slow
@pytest.mark.parametrize("probs", [np.outer([0.54, 0.28, 0.18], [0.5, 0.5]),            # no association
                                   np.array([[0.32, 0.22], [0.12, 0.16], [0.06, 0.12]])],  # V about .2
                         ids=["null", "association"])
def test_cramers_v_of_a_replication_falls_inside_95_percent_of_the_time(probs):
    rng = np.random.default_rng(3)
    hits = []
    for r in range(200):
        t_o = rng.multinomial(82, probs.ravel()).reshape(3, 2)
        t_r = rng.multinomial(81, probs.ravel()).reshape(3, 2)
        lo, hi = consistency.cramers_v_pi(_chi2(t_o), 82, 2, 81, n_draws=4000, seed=r)
        hits.append(lo <= np.sqrt(_chi2(t_r) / 81) <= hi)
    assert 0.90 <= _coverage(hits) <= 0.99  # MC SE .015


def test_cramers_v_interval_is_reproducible_and_moves_with_the_original():
    a = consistency.cramers_v_pi(2.69, 82, 2, 81)
    assert a == consistency.cramers_v_pi(2.69, 82, 2, 81)
    b = consistency.cramers_v_pi(20.0, 82, 2, 81)
    assert b[0] > a[0] and b[1] > a[1] and b[0] < consistency.cramers_v(20.0, 82) < b[1]
