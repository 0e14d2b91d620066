"""CR2 cluster-robust tests of mixed-model fixed effects (helpers.mixed.cr2_test) against
clubSandwich (R output committed: tests/reference/growth_cr2.R), statsmodels' HC2 and the
estimator's defining property (unbiased under the working model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from helpers import growth, lmm, mixed
from helpers.paths import ROOT

REF = ROOT / "tests" / "reference"


@pytest.mark.parametrize("name", ["default_growth_input", "growth_input"])
def test_cr2_equals_clubsandwich_on_the_growth_model(name):
    ref = pd.read_csv(REF / "growth_cr2.csv")
    d = pd.read_csv(REF / f"{name}.csv")
    pats = d.groupby("participant_id")["pattern"].first().reset_index()
    dd, _, _ = growth.growth_data(d, pats)
    spec = growth.GrowthSpec()
    X, names = spec.fixed_design(dd["time"].to_numpy(), spec.dummies(dd["pattern"]))
    Z = np.column_stack([np.ones(len(dd)), dd["time"]])
    fit = lmm.fit_lmm_arrays(dd["pss_sr"].to_numpy(), X, Z, dd["participant_id"].to_numpy(), x_names=names)
    r = mixed.cr2_test(dd["pss_sr"].to_numpy(), X, Z, dd["participant_id"], fit.fixed["estimate"].to_numpy(),
                       fit.lambda_, fit.sigma)
    want = ref[ref["input"] == name].set_index("term").loc[names]
    # lme4 and helpers.lmm agree to ~1e-6 on the fit; the CR2 numbers inherit that
    np.testing.assert_allclose(r["se"], want["se_cr2"], rtol=1e-5)
    np.testing.assert_allclose(r["df"], want["df_bm"], rtol=1e-5)
    assert r["se"][names.index("time:unrepaired")] > fit.fixed.set_index("term").loc["time:unrepaired", "se"]


def test_cr2_with_one_row_per_cluster_and_no_random_effect_is_hc2():
    rng = np.random.default_rng(3)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.random(n) < 0.3])
    y = X @ [1.0, 0.5, 2.0] + rng.normal(size=n) * (1 + 2 * X[:, 2])
    ols = sm.OLS(y, X).fit(cov_type="HC2")
    r = mixed.cr2_test(y, X, np.ones((n, 1)), np.arange(n), ols.params, np.zeros((1, 1)), 1.0)
    np.testing.assert_allclose(r["se"], ols.bse, rtol=1e-10)


def test_cr2_is_unbiased_under_the_working_model():
    # E[c'V c] = sum_i u_i' (I - H)_i Phi (I - H)_i' u_i must equal c' M c (the model-based
    # variance) when Phi is the true covariance: computed here with dense N x N matrices
    rng = np.random.default_rng(5)
    sizes = rng.integers(2, 7, 15)
    groups = np.repeat(np.arange(sizes.size), sizes)
    n = groups.size
    t = np.concatenate([np.arange(s) for s in sizes]) - 2.0
    X = np.column_stack([np.ones(n), t, np.repeat(rng.random(sizes.size) < 0.4, sizes), t * 0])
    X[:, 3] = X[:, 1] * X[:, 2]
    Z = np.column_stack([np.ones(n), t])
    lam = np.array([[1.2, 0.0], [0.3, 0.4]])
    sigma = 0.8
    Phi = np.zeros((n, n))
    for g in range(sizes.size):
        i = groups == g
        Phi[np.ix_(i, i)] = sigma**2 * (np.eye(i.sum()) + Z[i] @ lam @ lam.T @ Z[i].T)
    W = np.linalg.inv(Phi)
    M = np.linalg.inv(X.T @ W @ X)
    resid_maker = np.eye(n) - X @ M @ X.T @ W
    c = np.array([0, 0, 0, 1.0])
    # CR2's u_i from the function: its variance estimate is linear in e e', so the expectation
    # follows by replacing e e' with (I - H) Phi (I - H)'; probe it through unit residuals
    E = resid_maker @ Phi @ resid_maker.T
    expected = 0.0
    L = np.linalg.cholesky(E + 1e-12 * np.eye(n))
    for j in range(n):  # E = sum_j l_j l_j': the sandwich of residuals l_j, summed
        beta = np.zeros(4)  # residuals y - X beta = l_j
        expected += mixed.cr2_test(L[:, j], X, Z, groups, beta, lam, sigma, c)["se"][0] ** 2
    assert expected == pytest.approx(c @ M @ c, rel=1e-6)
