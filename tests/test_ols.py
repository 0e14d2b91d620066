"""The batched least squares (helpers.ols: the general kernel and the paper's regression on it)
against statsmodels, one data set at a time, and the rule for a leverage of 1 (HC3 undefined), tested as a rule: no test here rests
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


# --------------------------------------------------------------------------------------------
# the general kernel: any design, a row mask, classical and HC3
# --------------------------------------------------------------------------------------------
def _general_sets(seed, count=25, m=50, p=4):
    """Designs with an intercept and p - 1 columns (one a 0/1 group), ragged by a mask that is
    not a prefix, unequal variances."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([np.ones((count, m, 1)), rng.normal(0, 2, (count, m, p - 2)),
                        (rng.random((count, m, 1)) < 0.3).astype(float)], axis=2)
    y = X @ rng.normal(0, 1, p) + rng.normal(0, 1, (count, m)) * (1 + 3 * X[:, :, -1])
    mask = rng.random((count, m)) < rng.uniform(0.2, 1.0, (count, 1))
    X[~mask] = rng.normal(0, 100, (int((~mask).sum()), p))  # junk outside the mask is ignored
    return y, X, mask


@pytest.mark.parametrize("seed", [4, 5])
def test_ols_batch_equals_statsmodels_with_a_mask(seed):
    y, X, mask = _general_sets(seed)
    res = ols.ols_batch(y, X, mask)
    checked = 0
    for k in range(len(y)):
        rows = mask[k]
        assert res["n"][k] == rows.sum() and res["df"][k] == rows.sum() - X.shape[2]
        if rows.sum() <= X.shape[2] or np.linalg.matrix_rank(X[k, rows]) < X.shape[2]:
            assert not res["estimable"][k] and np.isnan(res["coef"][k]).all()
            continue
        fit = sm.OLS(y[k, rows], X[k, rows]).fit()
        hc3 = sm.OLS(y[k, rows], X[k, rows]).fit(cov_type="HC3")
        lev_one = ols.leverage_is_one(fit.get_influence().hat_matrix_diag).any()
        assert res["estimable"][k] and res["hc3_defined"][k] == (not lev_one)
        np.testing.assert_allclose(res["coef"][k], fit.params, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(res["se"][k], fit.bse, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(res["resid"][k, rows], fit.resid, rtol=RTOL, atol=1e-9)
        assert (res["resid"][k, ~rows] == 0).all()
        if not lev_one:
            np.testing.assert_allclose(res["se_hc3"][k], hc3.bse, rtol=RTOL, atol=ATOL)
        checked += 1
    assert checked > 15


def test_ols_batch_shared_outcome_and_a_group_of_one():
    # one outcome, many completed designs (the imputation's use): the group column of the
    # second design has one member -- leverage 1, HC3 undefined, the classical fit kept; the
    # third has none -- rank deficient, not estimable
    rng = np.random.default_rng(9)
    n = 30
    base = np.column_stack([np.ones(n), rng.normal(30, 8, n)])
    flags = np.zeros((3, n))
    flags[0, :8] = 1
    flags[1, 5] = 1
    X = np.concatenate([np.broadcast_to(base, (3, n, 2)), flags[:, :, None]], axis=2)
    y = 5 + 0.6 * base[:, 1] + 6 * flags[0] + rng.normal(0, 5, n)
    res = ols.ols_batch(y, X)
    assert res["estimable"].tolist() == [True, True, False]
    assert res["hc3_defined"].tolist() == [True, False, False]
    for k in (0, 1):
        fit = sm.OLS(y, X[k]).fit()
        np.testing.assert_allclose(res["se"][k], fit.bse, rtol=RTOL)
    assert np.isnan(res["se_hc3"][1]).all()
    np.testing.assert_allclose(res["se_hc3"][0], sm.OLS(y, X[0]).fit(cov_type="HC3").bse, rtol=RTOL)


def test_the_paper_regression_is_the_kernel_on_its_design():
    post, pre, flag, n = _data_sets(21, count=20)
    res = ols.ols_unrepaired_batch(post, pre, flag, n)
    mask = np.arange(post.shape[1])[None, :] < n[:, None]
    X = np.stack([np.ones_like(pre), pre, flag], axis=2)
    kernel = ols.ols_batch(post, X, mask)
    ok = res["estimable"]
    assert ok.sum() > 10 and kernel["estimable"][ok].all()
    assert np.array_equal(res["b"][ok], kernel["coef"][ok, 2])
    assert np.array_equal(res["se_hc3"][ok], kernel["se_hc3"][ok, 2], equal_nan=True)
