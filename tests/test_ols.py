"""The lean regression of the paper's test (helpers.ols) against statsmodels and helpers.models,
and the standardised beta on hand-worked cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from helpers import episodes, models, ols, simulate


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lean_ols_matches_models_outcome_regression_and_statsmodels_hc3(seed):
    trial = simulate.simulate_trial(116, 10, seed=seed)
    pats = episodes.classify_participants(episodes.detect_episodes(trial.sessions), trial.sessions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = models.outcome_regression(pats, trial.participants, models=("A",))
    ref = ref[ref["term"] == "unrepaired"].iloc[0]
    d, _ = models.regression_data(pats, trial.participants)
    lean = ols.ols_unrepaired(d["post"], d["pre"], d["unrepaired"])
    for key in ("b", "se", "p", "beta", "beta_ci_low", "beta_ci_high"):
        assert lean[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
    assert lean["n"] == ref["n"] and lean["df"] == ref["df"]
    assert (lean["b_ci_low"], lean["b_ci_high"]) == pytest.approx((ref["ci_low"], ref["ci_high"]), rel=1e-9)
    hc3 = sm.OLS(d["post"].to_numpy(), sm.add_constant(d[["pre", "unrepaired"]].to_numpy())).fit(cov_type="HC3")
    assert lean["se_hc3"] == pytest.approx(hc3.bse[2], rel=1e-9)
    assert lean["p_hc3"] == pytest.approx(2 * stats.t.sf(abs(hc3.params[2] / hc3.bse[2]), hc3.df_resid), rel=1e-9)


def test_lean_ols_not_estimable_when_flag_is_constant():
    res = ols.ols_unrepaired([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 2.5, 4.0], [0, 0, 0, 0])
    assert res["estimable"] is False and math.isnan(res["beta"])


def test_standardised_beta_matches_a_hand_worked_case():
    # post = pre + 2*g exactly for 6 people: z-scored, beta_g = 2 * sd(g) / sd(post).
    pre = np.array([10.0, 12, 14, 16, 18, 20])
    g = np.array([0.0, 1, 0, 1, 0, 1])
    post = pre + 2 * g
    expected = 2 * g.std(ddof=1) / post.std(ddof=1)
    assert ols.standardised_beta(post, pre, g) == pytest.approx(expected)


def test_standardised_beta_uses_complete_cases_and_needs_variation():
    pre = pd.Series([1.0, 2, 3, 4, 5, np.nan])
    assert np.isnan(ols.standardised_beta(pre * 2, pre, pd.Series([0.0] * 6)))
    # A missing pre, post or flag drops that row only: the beta is the complete cases' beta.
    pre = pd.Series([10.0, 12, 14, 16, 18, 20, 22, np.nan, 30])
    g = pd.Series([0.0, 1, 0, 1, 0, 1, 0, 1, np.nan])
    post = pd.Series([11.0, 15, 14, 19, 18, 24, np.nan, 30, 33])
    complete = slice(0, 6)
    expected = ols.standardised_beta(post[complete], pre[complete], g[complete])
    assert np.isfinite(expected)
    assert ols.standardised_beta(post, pre, g) == pytest.approx(expected)


def test_p_values_and_critical_values_are_scipy_stats_t_to_the_bit():
    """ols computes the t distribution with scipy.special (no scipy.stats import): the same
    functions scipy.stats.t calls, so the same numbers."""
    from scipy import stats

    from helpers import ols

    rng = np.random.default_rng(11)
    post, pre = rng.normal(40, 10, size=(30, 25)), rng.normal(40, 10, size=(30, 25))
    flag = (rng.random((30, 25)) < 0.3).astype(float)
    n = rng.integers(5, 26, size=30)
    res = ols.ols_unrepaired_batch(post, pre, flag, n)
    ok = res["estimable"]
    df = res["df"][ok]
    assert ok.sum() > 20
    assert np.array_equal(res["p"][ok], 2 * stats.t.sf(np.abs(res["t"][ok]), df))
    crit = stats.t.ppf(0.975, df)
    assert np.array_equal(res["b_ci_high"][ok], res["b"][ok] + crit * res["se"][ok])
    one = ols.ols_unrepaired(post[0, :n[0]], pre[0, :n[0]], flag[0, :n[0]])
    assert one["p"] == float(2 * stats.t.sf(abs(one["t"]), one["df"]))
