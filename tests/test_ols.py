"""The batched regression of the power study (helpers.ols) against statsmodels, one data set at
a time, and the rule for a leverage of 1 (HC3 undefined), tested as a rule: no test here rests
on the bits of ``1 - h``, which differ between BLAS kernels."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from helpers import ols
from oracles.power import paper_regression  # statsmodels, one data set at a time

#: Batched SVD and inverse against statsmodels' pseudo-inverse (1e-10 absolute near zero).
RTOL, ATOL = 1e-10, 1e-10


def _data_sets(seed, count=40):
    """Ragged data sets in padded rows: sizes 4..60, unequal variances, some constant flags."""
    rng = np.random.default_rng(seed)
    m = 60
    n = rng.integers(4, m + 1, count)
    pre = rng.normal(30, 8, (count, m))
    flag = (rng.random((count, m)) < rng.uniform(0.05, 0.5, (count, 1))).astype(float)
    post = 5 + 0.5 * pre + 7 * flag + rng.normal(0, 1, (count, m)) * (3 + 6 * flag)
    return post, pre, flag, n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_equals_statsmodels_data_set_by_data_set(seed):
    post, pre, flag, n = _data_sets(seed)
    res = ols.ols_unrepaired_batch(post, pre, flag, n)
    checked = 0
    for i in range(len(n)):
        want = paper_regression(post[i, :n[i]], pre[i, :n[i]], flag[i, :n[i]])
        assert res["estimable"][i] == want["estimable"] and res["n"][i] == n[i] and res["df"][i] == n[i] - 3
        for key in ols.FIT_KEYS:
            assert res[key][i] == pytest.approx(want[key], rel=RTOL, abs=ATOL, nan_ok=True), (i, key)
        checked += want["estimable"]
    assert checked > 25


def test_not_estimable_with_a_constant_flag_fewer_than_4_or_a_rank_deficient_design():
    post = np.array([[1.0, 2, 3, 5, 7], [1.0, 2, 3, 5, 7], [2.0, 4, 6, 8, 9]])
    pre = np.array([[1.0, 2, 2.5, 4, 5], [1.0, 2, 2.5, 4, 5], [1.0, 1, 1, 1, 1]])
    flag = np.array([[0.0, 0, 0, 0, 0], [0.0, 1, 0, 1, 0], [0.0, 1, 0, 1, 0]])
    res = ols.ols_unrepaired_batch(post, pre, flag, [5, 3, 5])  # constant flag; n = 3; pre = intercept
    assert res["estimable"].tolist() == [False, False, False]
    assert np.isnan(res["beta"]).all() and res["df"].tolist() == [2, 0, 2]


def test_leverage_one_is_a_rule_not_the_bits_of_one_minus_h():
    # the rule itself: within 1e-10 of 1, on either side, is 1
    assert ols.leverage_is_one([1.0, 1 - 5e-11, 1 + 5e-11]).all()
    assert not ols.leverage_is_one([1 - 2e-10, 0.5, 0.0]).any()
    # the only flagged client of a data set has leverage 1 in exact arithmetic; whatever the
    # computed 1 - h (0, or a rounding error of either sign on another BLAS), HC3 is NaN and
    # the classical fit is not touched
    post = np.array([[2.0, 4, 2, 8, 5, 4, 3, 6, 12]])
    pre = np.array([[1.0, 3, 2, 6, 4, 5, 2, 7, 3]])
    flag = np.array([[0.0] * 8 + [1.0]])
    res = ols.ols_unrepaired_batch(post, pre, flag, [9])
    X = sm.add_constant(np.column_stack([pre[0], flag[0]]))
    assert ols.leverage_is_one(sm.OLS(post[0], X).fit().get_influence().hat_matrix_diag[-1])
    assert res["estimable"][0] and np.isnan(res["se_hc3"][0]) and np.isnan(res["b_hc3_ci_low"][0])
    assert res["se"][0] == pytest.approx(paper_regression(post[0], pre[0], flag[0])["se"], rel=RTOL)


def test_p_values_and_critical_values_are_the_t_distributions():
    """ols computes the t distribution with scipy.special (no scipy.stats import): the same
    numbers as scipy.stats.t, to 1e-13 (they call the same functions)."""
    from scipy import stats

    post, pre, flag, n = _data_sets(11, count=30)
    res = ols.ols_unrepaired_batch(post, pre, flag, n)
    ok = res["estimable"]
    df = res["df"][ok]
    np.testing.assert_allclose(res["p"][ok], 2 * stats.t.sf(np.abs(res["t"][ok]), df), rtol=1e-13)
    crit = stats.t.ppf(0.975, df)
    np.testing.assert_allclose(res["b_ci_high"][ok], res["b"][ok] + crit * res["se"][ok], rtol=1e-13)


def test_beta_scale_is_the_ratio_of_sample_sds():
    # post = pre + 2 g exactly: z-scored, beta_g = 2 sd(g) / sd(post)
    pre = np.array([10.0, 12, 14, 16, 18, 20])
    g = np.array([0.0, 1, 0, 1, 0, 1])
    post = pre + 2 * g
    assert 2 * ols.beta_scale(g, post) == pytest.approx(2 * np.sqrt(0.3) / np.std(post, ddof=1))
    res = ols.ols_unrepaired_batch(post[None], pre[None], g[None], [6])
    assert res["beta"][0] == pytest.approx(2 * ols.beta_scale(g, post), rel=1e-12)
